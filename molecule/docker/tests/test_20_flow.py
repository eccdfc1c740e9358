"""The whole request flow through the gateway on localhost: products, an order, its row in PostgreSQL."""

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
    response = requests.get(f"{gateway_url}/api/products", timeout=10)
    assert response.status_code == 200
    assert response.headers.get("X-Upstream-Instance")
