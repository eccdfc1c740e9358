"""Orders in PostgreSQL: placing one is a single transaction that can never oversell."""

from __future__ import annotations

from typing import Any, NoReturn

from shoplab.core.problems import ProblemError

ORDER_SELECT = """
SELECT o.id, o.status, o.total_cents, o.created_at,
       COALESCE(json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                           'unit_price_cents', i.unit_price_cents)
                         ORDER BY i.product_id) FILTER (WHERE i.order_id IS NOT NULL), '[]')
FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
"""


def order_body(order_id: int, status: str, total_cents: int, created_at, items: list) -> dict[str, Any]:
    """An order as the API shows it (one shape for every path that answers with an order)."""
    return {
        "id": order_id,
        "status": status,
        "total_cents": total_cents,
        "created_at": created_at.isoformat(),
        "items": items,
    }


def as_dict(row: tuple) -> dict[str, Any]:
    return order_body(*row)


# A one-line order as ONE statement: the stock update, the order and its line. The row lock on the
# product is then held for this statement only (plus COMMIT, unless the caller runs in autocommit),
# which is what limits throughput when every order is for the same product.
SINGLE_LINE_ORDER = """
WITH updated AS (
    UPDATE products SET stock = stock - %(q)s, updated_at = now()
    WHERE id = %(id)s AND stock >= %(q)s
    RETURNING id, price_cents
), new_order AS (
    INSERT INTO orders (total_cents) SELECT %(q)s::bigint * price_cents FROM updated
    RETURNING id, status, created_at, total_cents
), line AS (
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
    SELECT new_order.id, updated.id, %(q)s, updated.price_cents FROM new_order, updated
)
SELECT new_order.id, new_order.status, new_order.created_at, new_order.total_cents, updated.price_cents
FROM new_order, updated
"""


def place_order(cur, items: list[dict[str, int]]) -> dict[str, Any]:
    """Decrement stock and record the order (one statement for one line; the caller's transaction).

    `UPDATE … WHERE stock >= q` is the whole concurrency story: a concurrent order on the same row waits
    for the row lock, then re-checks the condition against the committed stock, so stock can't go below
    zero. Rows are locked in product-id order so two multi-item orders can't deadlock.
    """
    if len(items) == 1:
        return _place_single_line(cur, items[0])
    lines = []
    for item in sorted(items, key=lambda i: i["product_id"]):
        cur.execute(
            "UPDATE products SET stock = stock - %(q)s, updated_at = now() "
            "WHERE id = %(id)s AND stock >= %(q)s RETURNING price_cents",
            {"q": item["quantity"], "id": item["product_id"]},
        )
        row = cur.fetchone()
        if row is None:
            _refuse(cur, item["product_id"])
        lines.append(
            {"product_id": item["product_id"], "quantity": item["quantity"], "unit_price_cents": row[0]}
        )
    total = sum(line["quantity"] * line["unit_price_cents"] for line in lines)
    # The order and its lines in one statement (one round trip); the response is built from what we know.
    cur.execute(
        """
        WITH new_order AS (INSERT INTO orders (total_cents) VALUES (%s) RETURNING id, status, created_at)
        INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
        SELECT new_order.id, line.product_id, line.quantity, line.unit_price_cents
        FROM new_order,
             unnest(%s::int[], %s::int[], %s::int[]) AS line (product_id, quantity, unit_price_cents)
        RETURNING order_id, (SELECT status FROM new_order), (SELECT created_at FROM new_order)
        """,
        (
            total,
            [line["product_id"] for line in lines],
            [line["quantity"] for line in lines],
            [line["unit_price_cents"] for line in lines],
        ),
    )
    order_id, status, created_at = cur.fetchone()
    return {
        "id": order_id,
        "status": status,
        "total_cents": total,
        "created_at": created_at.isoformat(),
        "items": lines,
    }


def _place_single_line(cur, item: dict[str, int]) -> dict[str, Any]:
    cur.execute(SINGLE_LINE_ORDER, {"q": item["quantity"], "id": item["product_id"]})
    row = cur.fetchone()
    if row is None:
        _refuse(cur, item["product_id"])
    order_id, status, created_at, total_cents, unit_price_cents = row
    line = {**item, "unit_price_cents": unit_price_cents}
    return order_body(order_id, status, total_cents, created_at, [line])


def _refuse(cur, product_id: int) -> NoReturn:
    """The line could not be served: say why (unknown product or not enough stock)."""
    cur.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
    existing = cur.fetchone()
    if existing is None:
        raise ProblemError(422, f"No product with id {product_id}.")
    raise ProblemError(
        409,
        f"Not enough stock for product {product_id}: {existing[0]} left.",
        title="Insufficient stock",
        product_id=product_id,
        available=existing[0],
    )


def get_order(cur, order_id: int) -> dict[str, Any] | None:
    cur.execute(ORDER_SELECT + " WHERE o.id = %s GROUP BY o.id", (order_id,))
    row = cur.fetchone()
    return as_dict(row) if row else None


def list_orders(cur, page: int, per_page: int) -> dict[str, Any]:
    offset = (page - 1) * per_page
    cur.execute(ORDER_SELECT + " GROUP BY o.id ORDER BY o.id DESC LIMIT %s OFFSET %s", (per_page, offset))
    items = [as_dict(row) for row in cur.fetchall()]
    cur.execute("SELECT count(*) FROM orders")
    return {"items": items, "page": page, "per_page": per_page, "total": cur.fetchone()[0]}
