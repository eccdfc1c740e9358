"""Leave each lab's data as the run found it: the orders this run placed, and the products' stock.

Every POST of a run carries an Idempotency-Key `shoplab-bench-<run id>-<case id>-<thread>-<counter>`
(`key_nonce`, then bench/lua/post_orders.lua), so the keys of one run are selected exactly by their
prefix and no key a user chose is ever matched. The order service stores each key in the same
transaction as its order, with the order's JSON answer (`{"id": …, …}`) in `response_body`: that is how
a key leads to its order and the order to its lines.

Before the products are restocked, `snapshot` records the stock (and `updated_at`) of the products the
run touches; after the run, `clean` deletes the run's keys, orders and order lines and puts those rows
back, in one transaction per lab, then drops the products from the Redis cache (the product service
would otherwise answer with the bench's stock until the entries expire). PostgreSQL is reached as
roles/lab_backup reaches it: `docker exec -i <postgres container> psql` in docker mode, psql over the
lab host's Unix socket in netns mode (the role puts the command line in the plan, `databases`).
The loopback floor starts a PostgreSQL of its own and throws it away: it needs nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from shoplab.core.cache import PAGES_KEY, item_key
from shoplab.order.idempotency import MAX_KEY_LENGTH

KEY_PREFIX = "shoplab-bench-"
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
CASE_ID = re.compile(r"^[0-9a-f]{12}$")
# What post_orders.lua appends to the nonce: "-<wrk thread>-<counter>", each at most 10 digits.
LUA_SUFFIX_MAX = 22
TIMEOUT_S = 120


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC second of the start plus 6 random hex digits: two runs in one second still differ."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_prefix(run_id: str) -> str:
    """The prefix every Idempotency-Key of the run starts with (and that only they start with)."""
    if not RUN_ID.match(run_id):
        raise ValueError(f"not a bench run id: {run_id!r}")
    return f"{KEY_PREFIX}{run_id}-"


def key_nonce(run_id: str, case_id: str) -> str:
    """The nonce one case passes to post_orders.lua: `shoplab-bench-<run id>-<case id>`."""
    if not CASE_ID.match(case_id):
        raise ValueError(f"not a case id (12 hex digits): {case_id!r}")
    nonce = run_prefix(run_id) + case_id
    assert len(nonce) + LUA_SUFFIX_MAX <= MAX_KEY_LENGTH
    return nonce


@dataclass
class Database:
    """How to run psql against one lab's database (and redis-cli against its cache) from this host."""

    mode: str
    psql: list[str]
    cache: list[str] = field(default_factory=list)
    # A lab in a VM: a command that runs its last argument as a shell command line there (ssh … --).
    via: list[str] = field(default_factory=list)
    # A lab over several VMs whose cache runs on another VM than its database: the same, for the cache.
    cache_via: list[str] | None = None

    @classmethod
    def of(cls, mode: str, spec: dict) -> Database:
        cache_via = spec.get("cache_via")
        return cls(mode=mode, psql=list(spec["psql"]), cache=list(spec.get("cache") or []),
                   via=list(spec.get("via") or []),
                   cache_via=None if cache_via is None else list(cache_via))  # fmt: skip

    def command(self, argv: list[str], via: list[str] | None = None) -> list[str]:
        """argv as run from this host: itself, or one quoted command line handed to `via` (the database's)."""
        via = self.via if via is None else via
        return [*via, shlex.join(map(str, argv))] if via else argv

    def run(self, script: str, **variables: str) -> str:
        argv = [*self.psql, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={value}"]
        done = subprocess.run(
            self.command(argv), input=script, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql ({self.mode}) exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout


SNAPSHOT_SQL = """
SELECT coalesce(json_agg(json_build_object('id', id, 'stock', stock, 'updated_at', updated_at) ORDER BY id),
                '[]')
FROM products WHERE id BETWEEN 1 AND :products;
"""

# One transaction: the run's keys (by prefix), their orders (the id in the stored answer), the orders'
# lines; then the recorded stock back on the rows the run touched. Prints `name|rows` per step.
CLEAN_SQL = """
BEGIN;
CREATE TEMPORARY TABLE bench_run_keys ON COMMIT DROP AS
    SELECT key, (response_body::json ->> 'id')::bigint AS order_id
    FROM idempotency_keys WHERE starts_with(key, :'prefix');
WITH gone AS (DELETE FROM order_items WHERE order_id IN (SELECT order_id FROM bench_run_keys) RETURNING 1)
    SELECT 'order_items', count(*) FROM gone;
WITH gone AS (DELETE FROM orders WHERE id IN (SELECT order_id FROM bench_run_keys) RETURNING 1)
    SELECT 'orders', count(*) FROM gone;
WITH gone AS (DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM bench_run_keys) RETURNING 1)
    SELECT 'idempotency_keys', count(*) FROM gone;
WITH recorded AS (
    SELECT * FROM json_to_recordset(:'stock'::json) AS r (id integer, stock integer, updated_at timestamptz)
), restored AS (
    UPDATE products p SET stock = r.stock, updated_at = r.updated_at FROM recorded r
    WHERE p.id = r.id AND (p.stock, p.updated_at) IS DISTINCT FROM (r.stock, r.updated_at)
    RETURNING 1
)
    SELECT 'products_restored', count(*) FROM restored;
COMMIT;
"""


def snapshot(db: Database, products: int) -> list[dict]:
    """The stock and updated_at of products 1..products, as they are now (what `clean` puts back)."""
    return json.loads(db.run(SNAPSHOT_SQL, products=str(int(products))).strip() or "[]")


def clean(db: Database, run_id: str, stock: list[dict]) -> dict:
    """Delete the run's keys, orders and order lines and put the recorded stock back (one transaction)."""
    out = db.run(CLEAN_SQL, prefix=run_prefix(run_id), stock=json.dumps(stock, separators=(",", ":")))
    counts = {name: int(rows) for name, rows in (line.split("|") for line in out.split() if "|" in line)}
    counts["key_prefix"] = run_prefix(run_id)
    counts["cache_cleared"] = forget_cached(db, [p["id"] for p in stock])
    return counts


def forget_cached(db: Database, product_ids: list[int]) -> bool | None:
    """Delete the products' cache entries (as the product service's writes do); None: no cache command."""
    if not db.cache or not product_ids:
        return None
    argv = db.command([*db.cache, "DEL", *(item_key(pid) for pid in product_ids), PAGES_KEY], db.cache_via)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and not done.stdout.startswith("(error)") and "ERR" not in done.stdout


RECORDED = "recorded-stock.json"


def save(path: Path, run_id: str, recorded: dict[str, tuple[Database, list[dict]]]) -> None:
    """What `clean` needs, in the results folder: `python -m shoplab_bench cleanup DIR` after a hard kill."""
    labs = {
        mode: {"psql": db.psql, "cache": db.cache, "via": db.via, "cache_via": db.cache_via, "stock": stock}
        for mode, (db, stock) in recorded.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "labs": labs}, indent=1, default=str))


def load(path: Path) -> tuple[str, dict[str, tuple[Database, list[dict]]]]:
    saved = json.loads(path.read_text())
    return saved["run_id"], {
        mode: (Database.of(mode, spec), spec["stock"]) for mode, spec in saved["labs"].items()
    }


def summary(mode: str, result: dict) -> str:
    """One line for the log and report.md."""
    if "error" in result:
        return f"{mode}: NOT cleaned up: {result['error']} (key prefix {result.get('key_prefix', '?')})"
    cache = {True: "cache entries dropped", False: "cache NOT cleared (entries expire)", None: "no cache"}
    return (
        f"{mode}: deleted {result['orders']:,} orders, {result['order_items']:,} order lines and "
        f"{result['idempotency_keys']:,} idempotency keys (prefix {result['key_prefix']}); stock of "
        f"{result['products_restored']:,} of {result.get('products_recorded', '?')} products put back; "
        f"{cache[result.get('cache_cleared')]}"
    )
