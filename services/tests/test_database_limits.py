"""PostgreSQL cannot hold the services: statements and lock waits have a time limit (a restore or a stuck
transaction costs a request a 503, not every thread), and Idempotency-Keys expire."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest
import requests
from helpers import assert_problem
from shoplab.core.db import Database
from shoplab.order import idempotency


def test_an_order_waiting_for_a_locked_row_is_a_503_after_the_lock_timeout(stack, new_product):
    product = new_product(stock=5)
    line = {"items": [{"product_id": product["id"], "quantity": 1}]}
    holder = psycopg2.connect(stack.database_url)  # a long transaction holding the product's row
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT stock FROM products WHERE id = %s FOR UPDATE", (product["id"],))
        started = time.monotonic()
        refused = requests.post(f"{stack.gateway_url}/api/orders", json=line, timeout=30)
        waited = time.monotonic() - started
        body = assert_problem(refused, 503)  # the order service's answer, before the gateway's 504
        assert "in time" in body["detail"]
        assert refused.headers["Retry-After"] == "1"
        assert waited < 4.5, waited  # DB_LOCK_TIMEOUT is 2 s; the gateway gives up at 5 s
    finally:
        holder.rollback()
        holder.close()
    assert requests.get(f"{stack.gateway_url}/api/products/{product['id']}").json()["stock"] == 5
    assert requests.post(f"{stack.gateway_url}/api/orders", json=line, timeout=30).status_code == 201


def test_a_statement_past_its_timeout_is_cancelled_and_the_connection_kept(stack):
    db = Database(stack.database_url, maxconn=1, statement_timeout=0.5, lock_timeout=0.25)
    try:
        with db.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "500ms"
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone()[0] == "250ms"
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        started = time.monotonic()
        with pytest.raises(psycopg2.errors.QueryCanceled), db.cursor() as cur:
            cur.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3
        with db.cursor() as cur:  # a cancelled statement is no broken connection: the same one again
            cur.execute("SELECT pg_backend_pid()")
            assert cur.fetchone()[0] == backend
    finally:
        db.close()


def test_an_idempotency_key_is_bound_to_its_body_until_it_expires(stack, servers, new_product):
    order = servers.start_service(
        "order", "order-short-keys", stack.service_env(SERVICE_REGISTRY="", IDEMPOTENCY_KEY_TTL="1")
    )
    url = f"http://127.0.0.1:{order.port}/api/orders"
    product = new_product(stock=10)
    key = {"Idempotency-Key": f"expiring-{uuid.uuid4()}"}
    first = {"items": [{"product_id": product["id"], "quantity": 1}]}
    other = {"items": [{"product_id": product["id"], "quantity": 2}]}
    placed = requests.post(url, json=first, headers=key, timeout=10)
    assert placed.status_code == 201
    assert requests.post(url, json=first, headers=key, timeout=10).headers["Idempotent-Replayed"] == "true"
    assert (
        "different request body" in assert_problem(requests.post(url, json=other, headers=key), 422)["detail"]
    )
    time.sleep(1.5)  # past IDEMPOTENCY_KEY_TTL
    again = requests.post(url, json=other, headers=key, timeout=10)
    assert again.status_code == 201, again.text  # a new order: the old key is free again
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != placed.json()["id"]


def test_expired_keys_are_deleted(stack, monkeypatch):
    db = Database(stack.database_url, maxconn=1)
    old, fresh = f"old-{uuid.uuid4()}", f"fresh-{uuid.uuid4()}"
    try:
        with db.cursor() as cur:
            cur.execute(
                "INSERT INTO idempotency_keys (key, fingerprint, created_at) "
                "VALUES (%s, 'x', now() - interval '2 days'), (%s, 'x', now())",
                (old, fresh),
            )
        monkeypatch.setattr(idempotency, "_purged_at", [time.monotonic() - idempotency.PURGE_EVERY_SECONDS])
        idempotency.purge_expired(db, ttl=24 * 3600)
        with db.cursor() as cur:
            cur.execute("SELECT key FROM idempotency_keys WHERE key IN (%s, %s)", (old, fresh))
            assert [row[0] for row in cur.fetchall()] == [fresh]
    finally:
        db.close()
