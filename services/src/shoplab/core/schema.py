"""The database schema, created idempotently by whichever service starts first, and the seed catalogue."""

from __future__ import annotations

import logging
import threading

from shoplab.core.db import UNAVAILABLE_ERRORS, Database

log = logging.getLogger("shoplab.schema")

# Any constant works; it only has to be the same in every instance so concurrent starts take turns.
SCHEMA_LOCK_ID = 0x5B0B1AB

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS products (
    id           serial PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    name         text NOT NULL,
    price_cents  integer NOT NULL CHECK (price_cents >= 0),
    -- The last line of defence: no code path can oversell, even a buggy one.
    stock        integer NOT NULL CHECK (stock >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
    id           bigserial PRIMARY KEY,
    status       text NOT NULL DEFAULT 'confirmed',
    total_cents  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id         bigint NOT NULL REFERENCES orders (id),
    product_id       integer NOT NULL REFERENCES products (id),
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents integer NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key            text PRIMARY KEY,
    fingerprint    text NOT NULL,
    status_code    integer,
    response_body  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
"""

SEED_SIZE = 300
_ADJECTIVES = [
    "Sturdy",
    "Compact",
    "Classic",
    "Bright",
    "Quiet",
    "Rapid",
    "Gentle",
    "Solid",
    "Smart",
    "Light",
]
_NOUNS = [
    "Kettle",
    "Lamp",
    "Backpack",
    "Notebook",
    "Headphones",
    "Mug",
    "Chair",
    "Blender",
    "Jacket",
    "Drill",
]
_EDITIONS = ["Mini", "Pro", "Max"]


def seed_products(count: int = SEED_SIZE) -> list[tuple[str, str, int, int]]:
    """The same catalogue on every run: (sku, name, price_cents, stock)."""
    rows = []
    for i in range(1, count + 1):
        adjective = _ADJECTIVES[i % len(_ADJECTIVES)]
        noun = _NOUNS[(i // len(_ADJECTIVES)) % len(_NOUNS)]
        edition = _EDITIONS[(i // 100) % len(_EDITIONS)]
        price_cents = 199 + (i * 7919) % 19800
        stock = 20 + (i * 37) % 181
        rows.append((f"SKU-{i:05d}", f"{adjective} {noun} {edition}", price_cents, stock))
    return rows


def ensure_schema(db: Database, seed: bool) -> None:
    with db.cursor() as cur:
        # Transaction-scoped: released on commit, also when the process dies half-way.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        cur.execute(SCHEMA_SQL)
        if seed:
            cur.execute("SELECT EXISTS (SELECT 1 FROM products)")
            if not cur.fetchone()[0]:
                cur.executemany(
                    "INSERT INTO products (sku, name, price_cents, stock) VALUES (%s, %s, %s, %s)",
                    seed_products(),
                )
                log.info("seeded %d products", SEED_SIZE)


class SchemaGuard:
    """Creates the schema once per process, retrying on later calls while the database is down."""

    def __init__(self, db: Database, seed: bool):
        self.db = db
        self.seed = seed
        self.done = False
        self._lock = threading.Lock()

    def ensure(self) -> bool:
        if self.done:
            return True
        with self._lock:
            if not self.done:
                try:
                    ensure_schema(self.db, self.seed)
                    self.done = True
                except UNAVAILABLE_ERRORS as error:
                    log.warning("schema not ready, database unavailable: %s", error)
        return self.done


def require_schema(app, guard: SchemaGuard) -> None:
    """API requests get a 503 problem until the schema exists (the database may start after us)."""
    from flask import request

    from shoplab.core.problems import ProblemError

    @app.before_request
    def _schema_first() -> None:
        if request.path.startswith("/api/") and not guard.ensure():
            raise ProblemError(503, "The database is not ready yet; try again.")
