"""Product API: the catalogue, read through the Redis cache, and its write path."""

from __future__ import annotations

import re
import uuid

from flask import Blueprint, Response, current_app, request

from shoplab.core.cache import ProductCache
from shoplab.core.problems import ProblemError
from shoplab.core.validation import (
    MAX_INT,
    integer_field,
    json_object_body,
    path_id,
    query_int,
    reject_unknown_fields,
    string_field,
)
from shoplab.product.fastpath import DEFAULT_PAGE, DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE
from shoplab.product.repository import ProductRepository, to_json

bp = Blueprint("products", __name__, url_prefix="/api/products")

SKU = re.compile(r"[A-Za-z0-9-]+")
READS = frozenset({"GET", "HEAD", "OPTIONS"})


@bp.before_app_request
def _operators_write() -> None:
    """Every write to the catalogue (any method that is not a read, routed or not) needs the operator's
    token: otherwise anyone could set a price to 0 and buy for nothing."""
    path = request.path
    if request.method not in READS and (path == bp.url_prefix or path.startswith(f"{bp.url_prefix}/")):
        current_app.extensions["shoplab.operator"].require()


def cache() -> ProductCache:
    return current_app.extensions["shoplab.cache"]


def repository() -> ProductRepository:
    return current_app.extensions["shoplab.products"]


def json_response(body: bytes, status: int = 200, cache_state: str | None = None) -> Response:
    response = Response(body, status=status, mimetype="application/json")
    if cache_state:
        response.headers["X-Cache"] = cache_state
    return response


def miss_state() -> str:
    # BYPASS tells the caller Redis was not usable and PostgreSQL answered alone.
    return "MISS" if cache().available() else "BYPASS"


@bp.get("")
def list_products() -> Response:
    page = query_int("page", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    per_page = query_int("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
    # The version is noted before PostgreSQL is read: a write committed meanwhile makes the fill a no-op.
    cached, version = cache().get_page(page, per_page)
    if cached is not None:
        return json_response(cached, cache_state="HIT")
    state = miss_state()
    body = to_json(repository().page(page, per_page))
    if state == "MISS":
        cache().set_page(page, per_page, body, version)
    return json_response(body, cache_state=state)


@bp.get("/<raw_id>")
def get_product(raw_id: str) -> Response:
    product_id = path_id(raw_id)
    cached, version = cache().get_item(product_id)
    if cached is not None:
        return json_response(cached, cache_state="HIT")
    state = miss_state()
    product = repository().get(product_id)
    if product is None:
        raise ProblemError(404, f"No product with id {product_id}.")
    body = to_json(product)
    if state == "MISS":
        cache().set_item(product_id, body, version)
    return json_response(body, cache_state=state)


@bp.post("")
def create_product() -> Response:
    body = json_object_body()
    reject_unknown_fields(body, {"sku", "name", "price_cents", "stock"})
    name = string_field(body, "name", max_length=200)
    price_cents = integer_field(body, "price_cents", minimum=0, maximum=MAX_INT)
    stock = integer_field(body, "stock", minimum=0, maximum=MAX_INT)
    sku = (
        string_field(body, "sku", max_length=64, required=False, pattern=SKU)
        or f"SKU-{uuid.uuid4().hex[:12].upper()}"
    )
    product = repository().create(sku, name, price_cents, stock)
    if product is None:
        raise ProblemError(409, f"A product with SKU '{sku}' already exists.")
    cache().invalidate([product["id"]])
    response = json_response(to_json(product), status=201)
    response.headers["Location"] = f"/api/products/{product['id']}"
    return response


@bp.patch("/<raw_id>")
def update_product(raw_id: str) -> Response:
    product_id = path_id(raw_id)
    body = json_object_body()
    reject_unknown_fields(body, {"name", "price_cents", "stock"})
    changes = {
        "name": string_field(body, "name", max_length=200, required=False),
        "price_cents": integer_field(body, "price_cents", minimum=0, required=False),
        "stock": integer_field(body, "stock", minimum=0, required=False),
    }
    changes = {column: value for column, value in changes.items() if value is not None}
    if not changes:
        raise ProblemError(422, "Send at least one of 'name', 'price_cents', 'stock'.")
    product = repository().update(product_id, changes)
    if product is None:
        raise ProblemError(404, f"No product with id {product_id}.")
    cache().invalidate([product_id])
    return json_response(to_json(product))
