"""PostgreSQL, read directly (not through the shop): the product's stock before, the drill's orders after.

The lab's database is reached as the benchmark reaches it (shoplab_bench.cleanup.Database: psql over
the netns lab host's Unix socket, or `docker exec` into the docker lab's PostgreSQL container; the
command line comes from roles/bench's target description). The clean-up is the benchmark's transaction
(shoplab_bench.cleanup.CLEAN_SQL) with the drill's key prefix: the drill's keys, orders and order lines
go, and the product's recorded stock and updated_at are put back.
"""

from __future__ import annotations

import json
import re

from shoplab_bench.cleanup import CLEAN_SQL, Database, forget_cached

from shoplab_drill.checker import DatabaseState

KEY_PREFIX = "shoplab-drill-"
PREFIX = re.compile(r"^shoplab-drill-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}-[a-z0-9-]+-$")

RECORD_SQL = """
SELECT json_build_object('id', id, 'stock', stock, 'updated_at', updated_at) FROM products WHERE id = :pid;
"""
# The new stock and when it was set (PostgreSQL's clock): the set checker counts the orders after it.
RESTOCK_SQL = """
UPDATE products SET stock = stock + :add, updated_at = now() WHERE id = :pid
RETURNING stock || '|' || extract(epoch FROM now());
"""
# What the set checker compares with the client's view: the drill's keys (with the order id each stored
# answer names; only successes are stored), the orders of the product since the load started, the stock.
STATE_SQL = """
SELECT json_build_object(
    'stock', (SELECT stock FROM products WHERE id = :pid),
    'keys', (SELECT coalesce(json_object_agg(key, CASE WHEN status_code BETWEEN 200 AND 299
                                                       THEN (response_body::json ->> 'id')::bigint END), '{}')
             FROM idempotency_keys WHERE starts_with(key, :'prefix')),
    'orders', (SELECT coalesce(json_agg(o.id ORDER BY o.id), '[]')
               FROM orders o JOIN order_items i ON i.order_id = o.id
               WHERE i.product_id = :pid AND o.created_at >= to_timestamp(:since)),
    'foreign', (SELECT coalesce(json_agg(o.id ORDER BY o.id), '[]')
                FROM orders o JOIN order_items i ON i.order_id = o.id
                JOIN idempotency_keys k ON k.status_code BETWEEN 200 AND 299
                     AND (k.response_body::json ->> 'id')::bigint = o.id AND NOT starts_with(k.key, :'prefix')
                WHERE i.product_id = :pid AND o.created_at >= to_timestamp(:since))
);
"""


def check_prefix(prefix: str) -> str:
    if not PREFIX.match(prefix):
        raise ValueError(f"not a drill key prefix: {prefix!r}")
    return prefix


def record(db: Database, product_id: int) -> dict:
    """The product's stock and updated_at now (what the clean-up puts back)."""
    out = db.run(RECORD_SQL, pid=str(int(product_id))).strip()
    if not out:
        raise RuntimeError(f"product {product_id} does not exist in the {db.mode} lab's database")
    return json.loads(out)


def restock(db: Database, product_id: int, add: int) -> tuple[int, float]:
    """Add `add` to the stock so that no drill order fails for want of it; the new stock, and when."""
    stock, when = db.run(RESTOCK_SQL, pid=str(int(product_id)), add=str(int(add))).strip().split("|")
    forget_cached(db, [product_id])
    return int(stock), float(when)


def state(db: Database, product_id: int, prefix: str, since: float, stock_before: int) -> DatabaseState:
    raw = json.loads(
        db.run(STATE_SQL, pid=str(int(product_id)), prefix=check_prefix(prefix), since=f"{since:.6f}").strip()
    )
    keys = {key: (int(value) if value is not None else None) for key, value in raw["keys"].items()}
    return DatabaseState(
        keys=keys,
        orders=[int(i) for i in raw["orders"]],
        foreign=[int(i) for i in raw.get("foreign") or []],
        stock_before=stock_before,
        stock_after=int(raw["stock"]),
        quantity=1,
    )


def clean(db: Database, prefix: str, recorded: dict) -> dict:
    """Delete the drill's keys, orders and lines; put the recorded stock back; drop the cache entry."""
    out = db.run(CLEAN_SQL, prefix=check_prefix(prefix), stock=json.dumps([recorded], separators=(",", ":")))
    counts = {name: int(rows) for name, rows in (line.split("|") for line in out.split() if "|" in line)}
    counts["cache_cleared"] = forget_cached(db, [recorded["id"]])
    return counts
