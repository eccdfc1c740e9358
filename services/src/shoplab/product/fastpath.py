"""Which requests a cache hit may answer before Flask: the benchmark's hot path (GET /api/products…).

A hit is a Redis GET/HGET and the stored bytes written back, skipping Flask's routing and request
context, which cost more than everything else on this path. The product's event-loop worker
(`server.product_worker`) answers them on its loop; anything that is not a plain, well-formed cache hit
goes to the Flask app, which does the full validation, the misses, the errors, and on the thread path
(WORKER_CLASS set to a thread worker) the hits as well, through the same cache.
"""

from __future__ import annotations

from shoplab.core.cache import item_read, page_read

LIST_PATH = "/api/products"
ITEM_PREFIX = "/api/products/"
# Only these exact query shapes are served here; the defaults must match the Flask route's.
DEFAULT_PAGE, DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE = 1, 20, 100_000, 100


def _page_params(query: str) -> tuple[int, int] | None:
    params = {"page": DEFAULT_PAGE, "per_page": DEFAULT_PER_PAGE}
    seen = set()
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        # Anything unusual (unknown or repeated names, non-digits) is left to the Flask route.
        if name not in params or name in seen or not (value.isascii() and value.isdigit()) or len(value) > 6:
            return None
        seen.add(name)
        params[name] = int(value)
    page, per_page = params["page"], params["per_page"]
    if not (1 <= page <= MAX_PAGE and 1 <= per_page <= MAX_PER_PAGE):
        return None
    return page, per_page


def hit_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Cache", "HIT")]


def read_command(path: str, query: str) -> tuple[str, ...] | None:
    """The Redis read that may answer GET `path`?`query` (None: the Flask route must serve it)."""
    if path == LIST_PATH:
        params = _page_params(query)
        return page_read(*params) if params else None
    if path.startswith(ITEM_PREFIX):
        raw_id = path[len(ITEM_PREFIX) :]
        if raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 9 and raw_id[0] != "0" and not query:
            return item_read(int(raw_id))
    return None
