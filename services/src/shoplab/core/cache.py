"""The product cache: Redis client and the cache-key scheme shared by the product and order services.

Cache-aside: readers look in Redis, fall back to PostgreSQL and fill Redis with a TTL; writers (the
product service's write path, and the order service when it decrements stock) invalidate. Values are the
serialized JSON response bodies, so a hit is returned as bytes without being parsed.

Redis is an optimisation, never a dependency: every call here swallows Redis errors, logs a warning and
reports a miss, with short socket timeouts so a dead Redis cannot stall requests.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import redis

log = logging.getLogger("shoplab.cache")

# Idle connections kept for cache reads, per process (one is in use per concurrently reading thread).
MAX_IDLE_READ_CONNECTIONS = 64
ITEM_KEY = "shoplab:product:{id}"
# Every list page lives in one hash, so one DEL invalidates all pages after any write.
PAGES_KEY = "shoplab:product-pages"


def item_key(product_id: int) -> str:
    return ITEM_KEY.format(id=product_id)


def page_field(page: int, per_page: int) -> str:
    return f"{page}:{per_page}"


def item_read(product_id: int) -> tuple[str, ...]:
    """The Redis command that reads a cached product (its reply: the body, or nil on a miss)."""
    return ("GET", item_key(product_id))


def page_read(page: int, per_page: int) -> tuple[str, ...]:
    """The Redis command that reads a cached list page."""
    return ("HGET", PAGES_KEY, page_field(page, per_page))


class ProductCache:
    def __init__(self, url: str, ttl: int, timeout: float):
        self.ttl = ttl
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=0,
            retry_on_timeout=False,
        )
        # After a failure, skip Redis for a moment instead of paying a timeout on every request.
        self._down_until = 0.0
        self.backoff_seconds = 1.0
        # Cache reads (the hot path) skip redis-py's command machinery (retry wrapper, pool checkout with
        # a can_read probe): a connection of the client's own class and settings, taken from a deque
        # (pop/append are atomic, no lock), one packed command, one reply. Half the CPU of client.get().
        self._idle_readers: deque = deque()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, operation: str, error: Exception) -> None:
        """Skip Redis for `backoff_seconds` (also used by the event loop's client, `core.loop_redis`)."""
        self._down_until = time.monotonic() + self.backoff_seconds
        log.warning("redis %s failed, serving from PostgreSQL: %s", operation, error)

    def read(self, command: tuple[str, ...]) -> bytes | None:
        """The reply to a read command (`item_read`, `page_read`); None on a miss or a failure."""
        return self._call(command[0].lower(), self._read, *command)

    def get_item(self, product_id: int) -> bytes | None:
        return self.read(item_read(product_id))

    def set_item(self, product_id: int, body: bytes) -> None:
        self._call("set", self.client.set, item_key(product_id), body, ex=self.ttl)

    def get_page(self, page: int, per_page: int) -> bytes | None:
        return self.read(page_read(page, per_page))

    def set_page(self, page: int, per_page: int, body: bytes) -> None:
        def _store() -> None:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(PAGES_KEY, page_field(page, per_page), body)
                # NX: the first page sets the clock; later pages must not keep older pages alive forever.
                pipe.expire(PAGES_KEY, self.ttl, nx=True)
                pipe.execute()

        self._call("hset", _store)

    def invalidate(self, product_ids: list[int]) -> bool:
        keys = [item_key(pid) for pid in product_ids] + [PAGES_KEY]
        # Invalidation is attempted even while backing off: a stale cache is worse than a slow write.
        try:
            self.client.delete(*keys)
            return True
        except redis.RedisError as error:
            self.failed("delete", error)
            return False

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def _read(self, *command: str) -> bytes | None:
        try:
            conn = self._idle_readers.pop()
        except IndexError:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)  # connects (AUTH, SELECT) on first use
        try:
            conn.send_packed_command(conn.pack_command(*command), check_health=False)
            reply = conn.read_response()
        except BaseException:
            conn.disconnect()  # a half-read reply must never be read as the next command's
            # The idle ones most likely share its fate (a Redis restart closed them all): each would
            # otherwise cost one more failed read and backoff before reads are served from Redis again.
            while self._idle_readers:
                self._idle_readers.pop().disconnect()
            raise
        if len(self._idle_readers) < MAX_IDLE_READ_CONNECTIONS:
            self._idle_readers.append(conn)
        else:
            conn.disconnect()
        return reply

    def _call(self, operation: str, func, *args, **kwargs):
        if not self.available():
            return None
        try:
            return func(*args, **kwargs)
        except redis.RedisError as error:
            self.failed(operation, error)
            return None
