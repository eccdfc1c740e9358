"""Order API: place orders (idempotently when asked) and read them back."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, request

from shoplab.core.problems import ProblemError
from shoplab.core.validation import integer_field, json_object_body, path_id, query_int, reject_unknown_fields
from shoplab.order import idempotency
from shoplab.order.repository import get_order, list_orders, place_order

bp = Blueprint("orders", __name__, url_prefix="/api/orders")

MAX_ITEMS = 50
MAX_QUANTITY = 1000
REPLAYED = {"Idempotent-Replayed": "true"}


def db():
    return current_app.extensions["shoplab.db"]


def key_ttl() -> float:
    return current_app.config["SHOPLAB"].idempotency_key_ttl


def checked_items(body: dict) -> list[dict[str, int]]:
    reject_unknown_fields(body, {"items"})
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise ProblemError(422, f"'items' must be a list of 1 to {MAX_ITEMS} order lines.")
    lines = []
    for item in items:
        if not isinstance(item, dict):
            raise ProblemError(422, "Each order line must be an object with 'product_id' and 'quantity'.")
        reject_unknown_fields(item, {"product_id", "quantity"})
        lines.append(
            {
                "product_id": integer_field(item, "product_id", minimum=1),
                "quantity": integer_field(item, "quantity", minimum=1, maximum=MAX_QUANTITY),
            }
        )
    if len({line["product_id"] for line in lines}) != len(lines):
        raise ProblemError(422, "Each product may appear only once per order.")
    return lines


def json_response(body: str, status: int, **headers: str) -> Response:
    response = Response(body, status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


@bp.post("")
def create_order() -> Response:
    key = idempotency.checked_key(request.headers.get("Idempotency-Key"))
    body = json_object_body()
    items = checked_items(body)
    # Without a key a one-line order is a single statement: autocommit saves BEGIN and COMMIT.
    with db().cursor(autocommit=key is None and len(items) == 1) as cur:
        if key is not None:
            stored = idempotency.claim(cur, key, idempotency.fingerprint(body), key_ttl())
            if stored is not None:
                replayed = {
                    "Idempotent-Replayed": "true",
                    "Location": f"/api/orders/{json.loads(stored.body)['id']}",
                }
                return json_response(stored.body, stored.status, **replayed)
        order = place_order(cur, items)
        payload = json.dumps(order, separators=(",", ":"))
        if key is not None:
            idempotency.store(cur, key, 201, payload)
    # After commit: the product service's cached stock is now stale.
    current_app.extensions["shoplab.cache"].invalidate([line["product_id"] for line in items])
    if key is not None:
        idempotency.purge_expired(db(), key_ttl())
    return json_response(payload, 201, Location=f"/api/orders/{order['id']}")


@bp.get("/<raw_id>")
def show_order(raw_id: str) -> Response:
    order_id = path_id(raw_id)
    with db().cursor() as cur:
        order = get_order(cur, order_id)
    if order is None:
        raise ProblemError(404, f"No order with id {order_id}.")
    return json_response(json.dumps(order, separators=(",", ":")), 200)


@bp.get("")
def index_orders() -> Response:
    # Every customer's orders: the operator's only. One order by its id stays public (its id is the
    # customer's receipt).
    current_app.extensions["shoplab.operator"].require()
    page = query_int("page", 1, minimum=1, maximum=100_000)
    per_page = query_int("per_page", 20, minimum=1, maximum=100)
    with db().cursor() as cur:
        result = list_orders(cur, page, per_page)
    return json_response(json.dumps(result, separators=(",", ":")), 200)
