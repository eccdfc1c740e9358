"""The cache never holds data older than the last committed write: a read that raced an order must not put
the stock it read before the order back into Redis, and a failed invalidation is not forgotten."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import redis
import requests
from shoplab.core.cache import ProductCache, item_key
from shoplab.devtools.servers import wait_for


def database_stock(stack, product_id: int) -> int:
    with psycopg2.connect(stack.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
        return cur.fetchone()[0]


FILLS = {b"SET", b"HSET", b"EVAL", b"EVALSHA"}


def _command(chunk: bytes) -> bytes:
    """The name of the first command in a chunk of RESP (`*3\\r\\n$3\\r\\nSET\\r\\n…`)."""
    parts = chunk.split(b"\r\n", 3)
    return parts[2].upper() if len(parts) > 2 else b""


class FillHoldingProxy:
    """A TCP forwarder in front of Redis for one product instance that can hold back the commands that
    fill the cache (SET, HSET, EVAL…) until told: a read's fill then arrives after an
    order committed and invalidated, as it does when the read loses the race, every time."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.holding = threading.Event()
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, to_redis: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if to_redis and self.holding.is_set() and _command(chunk) in FILLS:
                    self.held += 1
                    while self.holding.is_set():
                        time.sleep(0.01)
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.holding.clear()
        self.listener.close()


def test_a_read_racing_an_order_never_leaves_the_old_stock_in_the_cache(stack, servers, new_product):
    """A read of a product and one of its list page miss the cache and read the stock from PostgreSQL; an
    order for it commits and invalidates; only then do the reads' fills reach Redis. Every cache hit
    afterwards shows the stock the database has."""
    proxy = FillHoldingProxy(stack.redis.port)
    instance = servers.start_service(
        "product",
        "product-racing",
        # A held fill must not count as a Redis failure (the backoff would hide the cache).
        stack.service_env(
            SERVICE_REGISTRY="", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", REDIS_TIMEOUT="10"
        ),
    )
    base = f"http://127.0.0.1:{instance.port}"
    product = new_product(stock=10)
    item = f"{base}/api/products/{product['id']}"
    page = f"{base}/api/products?page={(product['id'] - 1) // 100 + 1}&per_page=100"

    def stock_in(response: requests.Response) -> int:
        body = response.json()
        return (
            next(p for p in body["items"] if p["id"] == product["id"])["stock"]
            if "items" in body
            else body["stock"]
        )

    try:
        proxy.holding.set()
        with ThreadPoolExecutor(max_workers=2) as pool:
            reads = [pool.submit(requests.get, url, timeout=30) for url in (item, page)]
            wait_for(lambda: proxy.held == 2, 10, "both reads' fills on their way to Redis")
            line = {"items": [{"product_id": product["id"], "quantity": 3}]}
            assert requests.post(f"{stack.gateway_url}/api/orders", json=line, timeout=10).status_code == 201
            proxy.holding.clear()  # the fills arrive now, after the order's invalidation
            assert [stock_in(r.result()) for r in reads] == [10, 10]  # what they read before the order
        assert database_stock(stack, product["id"]) == 7
        hits = []
        with requests.Session() as http:
            for url in (item, page) * 3:
                answer = http.get(url, timeout=10)
                if answer.headers["X-Cache"] == "HIT":
                    hits.append(stock_in(answer))
        assert len(hits) >= 4  # filled again by the first reads after the order at the latest
        assert set(hits) == {7}, f"cache hits show the stock before the order: {hits}"
    finally:
        proxy.close()


def test_an_invalidation_that_failed_is_retried_until_it_is_done(servers):
    """Redis does not take writes when an order wants to invalidate (paused here, as a busy or failing-over
    Redis would be): the entry a reader stored before must still go once Redis takes writes again, not
    live on for the TTL."""
    redis_server = servers.start_redis("redis-paused")
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    cache = ProductCache(url, ttl=60, timeout=0.25)
    admin = redis.Redis.from_url(url)
    admin.set(item_key(42), b'{"id": 42, "stock": 9}', ex=60)  # what a reader stored before
    assert admin.get(item_key(42)) is not None
    admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # reads go on, writes wait
    assert cache.invalidate([42]) is False  # timed out: the order's commit stands, the entry too
    assert admin.get(item_key(42)) is not None
    wait_for(lambda: admin.get(item_key(42)) is None, 10, "the retried invalidation")
