"""Product rows in PostgreSQL, and their JSON form (what the cache stores and the API returns)."""

from __future__ import annotations

import json
from typing import Any

from shoplab.core.db import Database

COLUMNS = "id, sku, name, price_cents, stock, updated_at"


def as_dict(row: tuple) -> dict[str, Any]:
    product_id, sku, name, price_cents, stock, updated_at = row
    return {
        "id": product_id,
        "sku": sku,
        "name": name,
        "price_cents": price_cents,
        "stock": stock,
        "updated_at": updated_at.isoformat(),
    }


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class ProductRepository:
    def __init__(self, db: Database):
        self.db = db

    def get(self, product_id: int) -> dict[str, Any] | None:
        with self.db.cursor() as cur:
            cur.execute(f"SELECT {COLUMNS} FROM products WHERE id = %s", (product_id,))
            row = cur.fetchone()
        return as_dict(row) if row else None

    def page(self, page: int, per_page: int) -> dict[str, Any]:
        with self.db.cursor() as cur:
            cur.execute(
                f"SELECT {COLUMNS} FROM products ORDER BY id LIMIT %s OFFSET %s",
                (per_page, (page - 1) * per_page),
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM products")
            total = cur.fetchone()[0]
        return {"items": [as_dict(r) for r in rows], "page": page, "per_page": per_page, "total": total}

    def create(self, sku: str, name: str, price_cents: int, stock: int) -> dict[str, Any] | None:
        """The new product, or None when the SKU is taken."""
        with self.db.cursor() as cur:
            cur.execute(
                f"INSERT INTO products (sku, name, price_cents, stock) VALUES (%s, %s, %s, %s) "
                f"ON CONFLICT (sku) DO NOTHING RETURNING {COLUMNS}",
                (sku, name, price_cents, stock),
            )
            row = cur.fetchone()
        return as_dict(row) if row else None

    def update(self, product_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        # Column names come from a fixed allow-list in the route, never from the request.
        assignments = ", ".join(f"{column} = %s" for column in changes)
        with self.db.cursor() as cur:
            cur.execute(
                f"UPDATE products SET {assignments}, updated_at = now() WHERE id = %s RETURNING {COLUMNS}",
                (*changes.values(), product_id),
            )
            row = cur.fetchone()
        return as_dict(row) if row else None
