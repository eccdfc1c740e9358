"""The product service: catalogue, cache-aside in Redis with invalidation, life without Redis."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import OPERATOR, assert_problem
from shoplab.core.schema import SEED_SIZE


def test_catalogue_is_seeded_and_paginated(gateway, http):
    first = http.get(f"{gateway}/api/products", params={"page": 1, "per_page": 50}, timeout=10)
    second = http.get(f"{gateway}/api/products", params={"page": 2, "per_page": 50}, timeout=10)
    assert first.status_code == second.status_code == 200
    assert first.json()["total"] >= SEED_SIZE
    first_ids = [p["id"] for p in first.json()["items"]]
    second_ids = [p["id"] for p in second.json()["items"]]
    assert len(first_ids) == len(second_ids) == 50
    assert first_ids == sorted(first_ids)
    assert max(first_ids) < min(second_ids)
    assert http.get(f"{gateway}/api/products/1", timeout=10).json()["sku"] == "SKU-00001"


def test_cache_miss_then_hit_and_invalidation_on_write(gateway, http, operator, new_product):
    product = new_product(stock=40, price_cents=500)
    url = f"{gateway}/api/products/{product['id']}"
    miss = http.get(url, timeout=10)
    hit = http.get(url, timeout=10)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert miss.json() == hit.json() == product

    changed = operator.patch(url, json={"price_cents": 650}, timeout=10)
    assert changed.status_code == 200
    after = http.get(url, timeout=10)
    assert after.headers["X-Cache"] == "MISS"
    assert after.json()["price_cents"] == 650
    assert http.get(url, timeout=10).headers["X-Cache"] == "HIT"


def test_list_pages_are_cached_and_invalidated(gateway, http, operator, new_product):
    params = {"page": 1, "per_page": 7}
    http.get(f"{gateway}/api/products", params=params, timeout=10)
    assert http.get(f"{gateway}/api/products", params=params, timeout=10).headers["X-Cache"] == "HIT"
    operator.patch(f"{gateway}/api/products/3", json={"name": "Renamed Product Three"}, timeout=10)
    page = http.get(f"{gateway}/api/products", params=params, timeout=10)
    assert page.headers["X-Cache"] == "MISS"
    assert page.json()["items"][2]["name"] == "Renamed Product Three"


def test_an_order_invalidates_the_cached_stock(gateway, http, new_product):
    product = new_product(stock=9)
    url = f"{gateway}/api/products/{product['id']}"
    http.get(url, timeout=10)
    assert http.get(url, timeout=10).headers["X-Cache"] == "HIT"
    order = http.post(
        f"{gateway}/api/orders", json={"items": [{"product_id": product["id"], "quantity": 4}]}, timeout=10
    )
    assert order.status_code == 201
    after = http.get(url, timeout=10)
    assert after.headers["X-Cache"] == "MISS"
    assert after.json()["stock"] == 5


def product_with_own_redis(stack, servers, name: str):
    """A stand-alone product instance on a Redis of its own (to kill or restart): that Redis, its URL."""
    redis = servers.start_redis(f"redis-{name}")
    product = servers.start_service(
        "product",
        f"product-{name}",
        stack.service_env(SERVICE_REGISTRY="", REDIS_URL=f"redis://127.0.0.1:{redis.port}/0"),
    )
    return redis, f"http://127.0.0.1:{product.port}"


def test_reads_survive_redis_stopping(stack, servers):
    """A product instance whose Redis dies mid-test keeps answering 200 from PostgreSQL."""
    redis, base = product_with_own_redis(stack, servers, "doomed")
    with requests.Session() as http:
        assert http.get(f"{base}/api/products/2", timeout=10).headers["X-Cache"] == "MISS"
        assert http.get(f"{base}/api/products/2", timeout=10).headers["X-Cache"] == "HIT"
        redis.kill()
        for _ in range(5):
            single = http.get(f"{base}/api/products/2", timeout=10)
            assert single.status_code == 200
            assert single.headers["X-Cache"] == "BYPASS"
            assert single.json()["sku"] == "SKU-00002"
            listing = http.get(f"{base}/api/products", params={"per_page": 5}, timeout=10)
            assert listing.status_code == 200
            assert len(listing.json()["items"]) == 5
        # Writes still work too (their invalidation is best effort while Redis is away).
        written = http.patch(f"{base}/api/products/2", json={"stock": 77}, headers=OPERATOR, timeout=10)
        assert written.status_code == 200
        assert http.get(f"{base}/api/products/2", timeout=10).json()["stock"] == 77
        ready = http.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 200  # degraded, still ready
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "down"}


def test_reads_return_to_redis_after_it_restarts(stack, servers):
    """Connections pooled before a Redis restart are dead: one failed read drops them all, then HITs again."""
    redis, base = product_with_own_redis(stack, servers, "restarted")
    base += "/api/products/3"
    with ThreadPoolExecutor(max_workers=8) as pool:  # several connections pooled at once
        list(pool.map(lambda _: requests.get(base, timeout=10).status_code, range(32)))
    redis.kill()
    servers.start_redis("redis-restarted-again", port=redis.port)
    states = []
    with requests.Session() as http:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and states[-2:] != ["HIT", "HIT"]:
            answer = http.get(base, timeout=10)
            assert answer.status_code == 200 and answer.json()["id"] == 3
            states.append(answer.headers["X-Cache"])
            time.sleep(0.2)
    assert states[-2:] == ["HIT", "HIT"], states
    # One failed read (then the 1 s backoff) at most per worker, not one per pooled connection.
    assert states.count("BYPASS") <= 2 * 6, states


def test_bad_product_writes_are_4xx_and_write_nothing(gateway, operator):
    http = operator
    url = f"{gateway}/api/products"
    total_before = http.get(url, timeout=10).json()["total"]
    good = {"name": "Widget", "price_cents": 100, "stock": 1}
    json_header = {"Content-Type": "application/json"}
    assert_problem(http.post(url, data="{oops", headers=json_header, timeout=10), 400)
    assert_problem(
        http.post(url, data="name=Widget", headers={"Content-Type": "text/plain"}, timeout=10), 415
    )
    assert_problem(http.post(url, data=b'{"name":"' + b"x" * 200_000 + b'"}', headers=json_header), 413)
    assert_problem(http.post(url, json=[good], timeout=10), 422)
    assert_problem(http.post(url, json={**good, "stock": -1}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "stock": True}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "price_cents": 1.5}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "price_cents": "100"}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "stock": 2**40}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "colour": "red"}, timeout=10), 422)
    assert_problem(http.post(url, json={"price_cents": 100, "stock": 1}, timeout=10), 422)
    assert_problem(http.post(url, json={**good, "name": "  "}, timeout=10), 422)
    assert_problem(http.patch(f"{url}/1", json={}, timeout=10), 422)
    assert_problem(http.patch(f"{url}/999999", json={"stock": 1}, timeout=10), 404)
    assert_problem(http.get(f"{url}/abc", timeout=10), 404)
    assert_problem(http.get(f"{url}/99999999999999", timeout=10), 404)
    assert_problem(http.get(url, params={"per_page": 0}, timeout=10), 400)
    assert_problem(http.get(url, params={"page": "x"}, timeout=10), 400)
    assert http.get(url, timeout=10).json()["total"] == total_before


def test_duplicate_sku_is_a_conflict(gateway, operator, new_product):
    product = new_product()
    again = {"sku": product["sku"], "name": "Twin", "price_cents": 1, "stock": 1}
    assert_problem(operator.post(f"{gateway}/api/products", json=again, timeout=10), 409)


def test_a_service_started_before_its_database_heals_when_it_comes(stack, servers):
    from shoplab.devtools.servers import free_port, http_status, wait_for

    db_port = free_port()
    redis = servers.start_redis("redis-early")  # its own, empty cache: every read must reach PostgreSQL
    env = stack.service_env(
        SERVICE_REGISTRY="",
        DATABASE_URL=f"postgresql://shoplab@127.0.0.1:{db_port}/shoplab",
        REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
    )
    product = servers.start_service("product", "product-early", env)
    base = f"http://127.0.0.1:{product.port}"
    assert http_status(f"{base}/health") == 200  # alive without its database...
    assert_problem(requests.get(f"{base}/ready", timeout=10), 503)  # ...but not ready
    assert_problem(requests.get(f"{base}/api/products/1", timeout=10), 503)

    servers.start_postgres("postgres-late", port=db_port)  # an empty cluster: schema and seed come from us
    wait_for(lambda: http_status(f"{base}/ready") == 200, 20, "readiness once PostgreSQL is up")
    assert requests.get(f"{base}/api/products/1", timeout=10).json()["sku"] == "SKU-00001"
