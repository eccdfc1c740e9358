"""Who may write: the operator's token for the catalogue and the order list, the registry's token and the
instance's own address for registry writes. Refusals are problems that say why."""

from __future__ import annotations

import http.client
import json

import pytest
import requests
from helpers import FAST_ENV, OPERATOR, REGISTRY, assert_problem, register
from shoplab.devtools.servers import LOOPBACK, wait_for

WRONG = {"Authorization": "Bearer not-the-lab-token"}


@pytest.mark.parametrize("headers", [{}, WRONG, {"Authorization": "Basic b3A6b3A="}])
def test_catalogue_writes_without_the_operator_token_are_401_and_change_nothing(gateway, headers):
    before = requests.get(f"{gateway}/api/products/1", timeout=10).json()
    total = requests.get(f"{gateway}/api/products", timeout=10).json()["total"]
    for method, path, body in (
        ("PATCH", "/api/products/1", {"price_cents": 0}),
        ("POST", "/api/products", {"name": "Free lunch", "price_cents": 0, "stock": 1}),
        ("PUT", "/api/products/1", {"price_cents": 0}),
        ("DELETE", "/api/products/1", None),
    ):
        refused = requests.request(method, f"{gateway}{path}", json=body, headers=headers, timeout=10)
        problem = assert_problem(refused, 401)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in problem["detail"]
    assert requests.get(f"{gateway}/api/products/1", timeout=10).json() == before
    assert requests.get(f"{gateway}/api/products", timeout=10).json()["total"] == total


def test_an_instance_checks_the_token_itself_not_only_behind_the_gateway(stack):
    direct = f"http://{LOOPBACK}:{stack.products[0].port}/api/products/1"
    assert_problem(requests.patch(direct, json={"price_cents": 0}, timeout=10), 401)
    assert (
        requests.patch(direct, json={"name": "Renamed by the operator"}, headers=OPERATOR).status_code == 200
    )


def test_the_order_list_is_the_operators_but_placing_and_reading_one_order_is_public(gateway, new_product):
    product = new_product(stock=3)
    placed = requests.post(
        f"{gateway}/api/orders", json={"items": [{"product_id": product["id"], "quantity": 1}]}, timeout=10
    )
    assert placed.status_code == 201
    assert requests.get(f"{gateway}{placed.headers['Location']}", timeout=10).json() == placed.json()
    assert_problem(requests.get(f"{gateway}/api/orders", timeout=10), 401)
    assert_problem(requests.get(f"{gateway}/api/orders", headers=WRONG, timeout=10), 401)
    listed = requests.get(f"{gateway}/api/orders", params={"per_page": 5}, headers=OPERATOR, timeout=10)
    assert placed.json()["id"] in [o["id"] for o in listed.json()["items"]]


def from_address(port: int, source: str, method: str, path: str, body: dict | None = None, *, headers: dict):
    """One request to the registry from the loopback address `source` (all of 127/8 is this host's)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5, source_address=(source, 0))
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_registry_writes_need_the_registry_token(stack):
    url = f"{stack.registry_url}/services/tokensvc/instances"
    body = {"instance_id": "t-1", "address": "127.0.0.1", "port": 6100}
    assert_problem(requests.post(url, json=body, timeout=5), 401)
    assert_problem(requests.post(url, json=body, headers=WRONG, timeout=5), 401)
    assert_problem(requests.post(url, json=body, headers=OPERATOR, timeout=5), 401)  # not the operator's
    assert register(stack.registry_url, "tokensvc", "t-1", 6100).status_code == 201
    beat = f"{url}/t-1/heartbeat"
    assert_problem(requests.put(beat, timeout=5), 401)
    assert_problem(requests.delete(f"{url}/t-1", timeout=5), 401)
    assert requests.get(url, timeout=5).json()["instances"][0]["instance_id"] == "t-1"  # look-ups are open


def test_an_instance_registers_only_its_own_address_and_cannot_take_a_live_ones_place(servers):
    registry = servers.start_service("registry", "registry-hijack", {**FAST_ENV, "HEARTBEAT_INTERVAL": "0.5"})
    port = registry.port
    path = "/services/product/instances"
    # Another address than the connection's own: 403, and the problem says which one it came from.
    status, kind, problem = from_address(
        port,
        "127.0.0.2",
        "POST",
        path,
        {"instance_id": "p-1", "address": "10.9.9.9", "port": 80},
        headers=REGISTRY,
    )
    assert (status, kind, problem["status"]) == (403, "application/problem+json", 403)
    assert "127.0.0.2" in problem["detail"] and "10.9.9.9" in problem["detail"]
    named = {"instance_id": "p-1", "address": "localhost", "port": 80}  # a name is never an address
    assert from_address(port, "127.0.0.1", "POST", path, named, headers=REGISTRY)[0] == 403

    assert register(f"http://{LOOPBACK}:{port}", "product", "p-1", 6200).status_code == 201
    hijack = {"instance_id": "p-1", "address": "127.0.0.2", "port": 6200}
    status, _, problem = from_address(port, "127.0.0.2", "POST", path, hijack, headers=REGISTRY)
    assert status == 409 and "127.0.0.1:6200" in problem["detail"]
    # Nor can another address keep it alive or remove it.
    assert from_address(port, "127.0.0.2", "PUT", f"{path}/p-1/heartbeat", headers=REGISTRY)[0] == 404
    assert from_address(port, "127.0.0.2", "DELETE", f"{path}/p-1", headers=REGISTRY)[0] == 404
    listed = requests.get(f"http://{LOOPBACK}:{port}{path}", timeout=5).json()["instances"]
    assert [(i["instance_id"], i["address"]) for i in listed] == [("p-1", "127.0.0.1")]

    # Once it stopped heartbeating and expired, the id is free again.
    def taken_over() -> bool:
        return from_address(port, "127.0.0.2", "POST", path, hijack, headers=REGISTRY)[0] == 201

    wait_for(taken_over, 10, "the expired id taken by another address", interval=0.25)
