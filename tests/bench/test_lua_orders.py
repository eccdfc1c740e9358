"""bench/lua/post_orders.lua against a real order service on loopback: every request is a new order."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg2
import pytest
from shoplab.devtools.servers import LOOPBACK, Servers
from shoplab_bench import tools
from shoplab_bench.parse import parse_wrk

LUA = Path(__file__).resolve().parents[2] / "bench" / "lua"

pytestmark = pytest.mark.skipif(
    not (shutil.which("wrk") and shutil.which("redis-server")), reason="needs wrk and redis-server (apt)"
)


@pytest.fixture(scope="module")
def order_service():
    servers = Servers()
    try:
        servers.start_redis()
        redis_url = f"redis://{LOOPBACK}:{servers.processes[-1].port}/0"
        database_url = servers.start_postgres()
        # The services refuse to start without an operator token (placing orders needs none).
        env = {"SERVICE_REGISTRY": "", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING", "SHOPLAB_OPERATOR_TOKEN": "x"}  # fmt: skip
        servers.start_service("product", "product-1", env)  # creates the schema and seeds 300 products
        order = servers.start_service("order", "order-1", env)
        # Seed stock is 20-200 per product: enough stock that no order can fail for want of it (a 409).
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("UPDATE products SET stock = 1000000")
        yield f"http://{LOOPBACK}:{order.port}", database_url
    finally:
        servers.stop()


def wrk_orders(url: str, nonce: str) -> dict:
    load = tools.Load(threads=2, connections=8, duration_s=2)
    ran = tools.run([], tools.wrk_argv(load, url, "orders", str(LUA), nonce), limit_s=20)
    assert ran.returncode == 0, ran.output
    return parse_wrk(ran.output)


def keys(database_url: str, nonce: str) -> list[str]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT key FROM idempotency_keys WHERE key LIKE %s", (f"{nonce}-%",))
        return [row[0] for row in cur.fetchall()]


def test_every_request_creates_an_order_with_its_own_key(order_service):
    url, database_url = order_service
    nonce = uuid.uuid4().hex[:12]
    result = wrk_orders(url, nonce)
    assert result["requests"] > 0
    assert result["non_2xx"] == 0  # no 409 (stock), no 422 (same key, other body)
    assert result["errors"] == 0
    stored = keys(database_url, nonce)
    # Replays would answer 201 too, but store no new key: as many keys as answered requests (wrk may
    # abandon the last in-flight ones, which the server still completed).
    assert len(stored) == len(set(stored))
    assert len(stored) >= result["requests"]
    # setup() numbered both wrk threads, each with its own counter.
    assert {key.split("-")[1] for key in stored} == {"1", "2"}


def test_a_second_run_never_replays_the_first(order_service):
    url, database_url = order_service
    first, second = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    wrk_orders(url, first)
    result = wrk_orders(url, second)
    assert result["non_2xx"] == 0
    assert len(keys(database_url, second)) >= result["requests"]
    assert not set(keys(database_url, first)) & set(keys(database_url, second))
