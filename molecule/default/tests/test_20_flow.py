"""The whole request flow from the lab host: products, an order, its row in PostgreSQL, round-robin."""

from __future__ import annotations

import json
import shlex

from labdata import INSTANCES, TESTINFRA_HOSTS, TOPOLOGY, instance
from labtest import TOKEN_FILES, order_and_read_back, round_robin_upstreams

testinfra_hosts = TESTINFRA_HOSTS


def psql(lab, sql: str) -> str:
    """Query the lab's PostgreSQL over its Unix socket, as postgres (no lab traffic involved)."""
    pg = instance("postgres")
    db = TOPOLOGY["shoplab_db_name"]
    socket = TOPOLOGY["shoplab_netns_postgres_socket_dir"]
    command = f"psql -h {socket} -p {pg['port']} -d {db} -tAX -c {shlex.quote(sql)}"
    return lab.check(f"runuser -u postgres -- {command}").strip()


def test_gateway_health(lab):
    status, _, _ = lab.http("GET", "/health")
    assert status == 200


def test_list_products(lab):
    status, headers, body = lab.http("GET", "/api/products")
    assert status == 200, body
    assert json.loads(body)["items"], body
    assert headers.get("x-upstream-instance", "").startswith("product-")


def test_create_and_read_back_an_order(lab):
    order = order_and_read_back(lab.http)
    row = psql(lab, f"SELECT total_cents FROM orders WHERE id = {int(order['id'])}")
    assert row == str(order["total_cents"]), row
    quantity = psql(lab, f"SELECT quantity FROM order_items WHERE order_id = {int(order['id'])}")
    assert quantity == "1"


def test_round_robin_reaches_every_product_instance(lab):
    expected = {i["name"] for i in INSTANCES if i["service"] == "product"}
    assert round_robin_upstreams(lab.http, expected) == expected


def test_catalogue_writes_and_the_order_list_are_the_operators(lab):
    """The operator token (generated on the lab host) guards them; without it a 401 problem."""
    status, headers, body = lab.http("PATCH", "/api/products/1", {"price_cents": 0})
    assert status == 401, body
    assert headers["content-type"].startswith("application/problem+json")
    status, _, body = lab.http("GET", "/api/orders?per_page=1")
    assert status == 401, body
    _, _, body = lab.http("GET", "/api/products/1")
    price = json.loads(body)["price_cents"]
    status, _, body = lab.http("PATCH", "/api/products/1", {"price_cents": price}, operator=True)
    assert status == 200, body  # the same price again: a write that changes nothing
    status, _, body = lab.http("GET", "/api/orders?per_page=1", operator=True)
    assert status == 200, body


def test_the_tokens_are_files_only_root_and_the_services_read(lab):
    for path in TOKEN_FILES["netns"].values():
        token = lab.host.file(path)
        assert token.exists and (token.user, token.group, token.mode) == ("root", "shoplab", 0o640), path
        assert len(token.content_string.strip()) >= 32
        # Only the path is handed over: the value is in no environment file or unit.
        found = lab.run(f"grep -rlF -f {shlex.quote(path)} /etc/shoplab/ /etc/systemd/system/")
        assert found.stdout.split() == [path], found.stdout
    gateway_env = lab.check(f"cat /etc/shoplab/{instance('gateway')['name']}.env")
    assert "TOKEN" not in gateway_env  # the gateway holds neither token
    assert "GATEWAY_ALLOWED_NETWORKS=" + TOPOLOGY["shoplab_tiers"]["backend"]["subnet"] in gateway_env
