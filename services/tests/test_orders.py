"""The order service: no overselling under concurrency, idempotent replays, strict validation."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import assert_problem


def order(gateway: str, items: list[dict], key: str | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(f"{gateway}/api/orders", json={"items": items}, headers=headers, timeout=30)


def stock_of(gateway: str, product_id: int) -> int:
    return requests.get(f"{gateway}/api/products/{product_id}", timeout=10).json()["stock"]


def test_fifty_concurrent_orders_never_oversell(gateway, new_product):
    product = new_product(stock=10)
    line = [{"product_id": product["id"], "quantity": 1}]
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: order(gateway, line), range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 10, statuses
    assert statuses.count(409) == 40, statuses
    assert stock_of(gateway, product["id"]) == 0
    # Both order instances took part (the gateway spreads the load).
    assert {r.headers["X-Upstream-Instance"] for r in responses} == {"order-1", "order-2"}


def test_order_is_recorded_with_prices_and_readable(gateway, http, operator, new_product):
    first, second = new_product(stock=5, price_cents=250), new_product(stock=5, price_cents=100)
    created = order(
        gateway, [{"product_id": second["id"], "quantity": 2}, {"product_id": first["id"], "quantity": 3}]
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["total_cents"] == 3 * 250 + 2 * 100
    assert created.headers["Location"] == f"/api/orders/{body['id']}"
    assert http.get(f"{gateway}/api/orders/{body['id']}", timeout=10).json() == body
    newest = operator.get(f"{gateway}/api/orders", params={"per_page": 5}, timeout=10).json()
    assert body["id"] in [o["id"] for o in newest["items"]]
    assert (stock_of(gateway, first["id"]), stock_of(gateway, second["id"])) == (2, 3)


def test_insufficient_stock_changes_nothing(gateway, new_product):
    plenty, scarce = new_product(stock=50), new_product(stock=1)
    refused = order(
        gateway, [{"product_id": plenty["id"], "quantity": 5}, {"product_id": scarce["id"], "quantity": 2}]
    )
    body = assert_problem(refused, 409)
    assert body["available"] == 1
    assert (stock_of(gateway, plenty["id"]), stock_of(gateway, scarce["id"])) == (50, 1)


def test_idempotent_replay_returns_the_stored_order(gateway, new_product):
    product = new_product(stock=10)
    key = f"key-{uuid.uuid4()}"
    line = [{"product_id": product["id"], "quantity": 3}]
    first = order(gateway, line, key)
    replay = order(gateway, line, key)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.headers["Location"] == first.headers["Location"]
    assert stock_of(gateway, product["id"]) == 7  # decremented once

    other_body = order(gateway, [{"product_id": product["id"], "quantity": 1}], key)
    assert_problem(other_body, 422)
    assert stock_of(gateway, product["id"]) == 7


def test_concurrent_requests_with_one_key_create_one_order(gateway, new_product):
    product = new_product(stock=100)
    key = f"key-{uuid.uuid4()}"
    line = [{"product_id": product["id"], "quantity": 1}]
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: order(gateway, line, key), range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert stock_of(gateway, product["id"]) == 99


def test_bad_orders_are_4xx_and_write_nothing(gateway, http, operator, new_product):
    product = new_product(stock=5)
    pid = product["id"]
    url = f"{gateway}/api/orders"
    total_before = operator.get(url, timeout=10).json()["total"]
    bad_bodies = [
        {"items": [{"product_id": pid, "quantity": 0}]},
        {"items": [{"product_id": pid, "quantity": -2}]},
        {"items": [{"product_id": pid, "quantity": True}]},
        {"items": [{"product_id": pid, "quantity": 1.0}]},
        {"items": [{"product_id": str(pid), "quantity": 1}]},
        {"items": [{"product_id": pid}]},
        {"items": [{"product_id": 987654321, "quantity": 1}]},  # unknown product
        {"items": [{"product_id": pid, "quantity": 1}, {"product_id": pid, "quantity": 1}]},
        {"items": []},
        {"items": "all of them"},
        {"items": [{"product_id": pid, "quantity": 1}], "coupon": "FREE"},
        {},
    ]
    for body in bad_bodies:
        assert_problem(http.post(url, json=body, timeout=10), 422)
    json_header = {"Content-Type": "application/json"}
    assert_problem(http.post(url, data='{"items": [', headers=json_header, timeout=10), 400)
    assert_problem(http.post(url, data="items=1", headers={"Content-Type": "text/plain"}, timeout=10), 415)
    assert_problem(http.post(url, data=b"[" + b"1," * 100_000 + b"1]", headers=json_header, timeout=10), 413)
    long_key = {"Idempotency-Key": "k" * 300}
    good = {"items": [{"product_id": pid, "quantity": 1}]}
    assert_problem(http.post(url, json=good, headers=long_key, timeout=10), 400)
    assert_problem(http.get(f"{url}/0", timeout=10), 404)
    assert_problem(http.get(f"{url}/123456789", timeout=10), 404)
    assert operator.get(url, timeout=10).json()["total"] == total_before
    assert stock_of(gateway, pid) == 5


def test_totals_beyond_32_bits_are_exact(gateway, new_product):
    dear = new_product(stock=1000, price_cents=2**31 - 1)
    cheap = new_product(stock=5, price_cents=1)
    single = order(gateway, [{"product_id": dear["id"], "quantity": 500}])
    double = order(
        gateway, [{"product_id": dear["id"], "quantity": 500}, {"product_id": cheap["id"], "quantity": 1}]
    )
    assert single.json()["total_cents"] == 500 * (2**31 - 1)
    assert double.json()["total_cents"] == 500 * (2**31 - 1) + 1
