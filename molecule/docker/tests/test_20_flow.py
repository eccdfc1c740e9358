"""The whole request flow through the gateway's published port (on localhost, or at the lab VM's address):
products, an order, its row in PostgreSQL."""

from __future__ import annotations

import requests
from conftest import by_service, docker


def test_full_flow_through_the_gateway(containers, gateway_url, topology):
    listing = requests.get(f"{gateway_url}/api/products", timeout=10)
    assert listing.status_code == 200
    products = listing.json()["items"]
    assert products, "the catalogue is empty"
    product_id = products[0]["id"]

    created = requests.post(
        f"{gateway_url}/api/orders", json={"items": [{"product_id": product_id, "quantity": 1}]}, timeout=10
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    read_back = requests.get(f"{gateway_url}/api/orders/{order_id}", timeout=10)
    assert read_back.status_code == 200
    assert read_back.json()["id"] == order_id

    postgres = by_service(containers)["postgres"][0]["Name"].lstrip("/")
    db = topology["shoplab_db_name"]
    user = topology["shoplab_db_user"]
    query = f"SELECT count(*) FROM orders WHERE id = {order_id}"
    rows = docker("exec", postgres, "psql", "-U", user, "-d", db, "-tAc", query)
    assert rows.strip() == "1"


def test_gateway_answers_on_localhost(gateway_url):
    """On its published port from this machine: localhost, or the lab VM's address (published on every
    address there)."""
    response = requests.get(f"{gateway_url}/api/products", timeout=10)
    assert response.status_code == 200
    assert response.headers.get("X-Upstream-Instance")


def operator_headers(containers) -> dict[str, str]:
    """The lab's operator token, read from a product container's Compose secret (never printed)."""
    product = by_service(containers)["product"][0]["Name"].lstrip("/")
    token = docker("exec", product, "cat", "/run/secrets/operator-token").strip()
    return {"Authorization": f"Bearer {token}"}


def test_catalogue_writes_and_the_order_list_are_the_operators(containers, gateway_url):
    refused = requests.patch(f"{gateway_url}/api/products/1", json={"price_cents": 0}, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert requests.get(f"{gateway_url}/api/orders?per_page=1", timeout=10).status_code == 401
    operator = operator_headers(containers)
    price = requests.get(f"{gateway_url}/api/products/1", timeout=10).json()["price_cents"]
    same = requests.patch(f"{gateway_url}/api/products/1", json={"price_cents": price}, headers=operator)
    assert same.status_code == 200, same.text  # the same price again: a write that changes nothing
    listed = requests.get(f"{gateway_url}/api/orders?per_page=1", headers=operator, timeout=10)
    assert listed.status_code == 200
