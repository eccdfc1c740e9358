"""The product cache: Redis client and the cache-key scheme shared by the product and order services.

Cache-aside: readers look in Redis, fall back to PostgreSQL and fill Redis with a TTL; writers (the
product service's write path, and the order service when it decrements stock) invalidate after they
commit. Values are the serialized JSON response bodies, so a hit is returned as bytes without being parsed.

A read that loses the race with a write (it read PostgreSQL before the write committed, and fills Redis
after the write invalidated) must not put the old data back for the whole TTL. So every entry has a
version key that each invalidation sets to a new random value, in the same transaction as the delete;
a reader notes the version before it reads PostgreSQL, and its fill is a script that writes only if the
version is still the one it noted. An invalidation that fails (Redis away) is retried until it is done,
or until whatever Redis held then has expired. (Random values, not a counter: a version key evicted and
made again can never come back as the value a reader noted.)

Redis is an optimisation, never a dependency: every call here swallows Redis errors, logs a warning and
reports a miss, with short socket timeouts so a dead Redis cannot stall requests.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque

import redis

log = logging.getLogger("shoplab.cache")

# Idle connections kept for cache reads, per process (one is in use per concurrently reading thread).
MAX_IDLE_READ_CONNECTIONS = 64
ITEM_KEY = "shoplab:product:{id}"
# Every list page lives in one hash, so one DEL invalidates all pages after any write.
PAGES_KEY = "shoplab:product-pages"
VERSION_KEY = "shoplab:product-version:{id}"
PAGES_VERSION_KEY = "shoplab:product-pages-version"
RETRY_SECONDS = 0.5
# Whatever Redis held when an invalidation failed is gone once its TTL ran out; a fill that raced it
# came at most a statement timeout later. Retrying stops after that.
RETRY_MARGIN_SECONDS = 10.0

# KEYS: the version key, the entry's key; ARGV: the version the reader noted ("" for none), the body, the
# TTL, and for a page its field in the hash.
FILL_ITEM = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""
FILL_PAGE = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3], 'NX')
return 1
"""


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


def version_key(product_id: int) -> str:
    return VERSION_KEY.format(id=product_id)


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
        self._fill_item = self.client.register_script(FILL_ITEM)
        self._fill_page = self.client.register_script(FILL_PAGE)
        # Invalidations still to do: product id (None: the pages) -> when retrying them may stop.
        self._pending: dict[int | None, float] = {}
        self._pending_lock = threading.Lock()
        self._retrying: threading.Thread | None = None

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, operation: str, error: Exception) -> None:
        """Skip Redis for `backoff_seconds` (also used by the event loop's client, `server.loop_redis`)."""
        self._down_until = time.monotonic() + self.backoff_seconds
        log.warning("redis %s failed, serving from PostgreSQL: %s", operation, error)

    def read(self, command: tuple[str, ...]) -> bytes | None:
        """The reply to a read command (`item_read`, `page_read`); None on a miss or a failure."""
        return self._call(command[0].lower(), self._read, *command)

    def get_item(self, product_id: int) -> tuple[bytes | None, bytes | None]:
        """The cached product (None: a miss) and its version (None: Redis failed: do not fill)."""
        reply = self._call("mget", self._read, "MGET", item_key(product_id), version_key(product_id))
        return (reply[0], reply[1] or b"") if reply else (None, None)

    def set_item(self, product_id: int, body: bytes, version: bytes | None) -> None:
        """Fill, unless the product was invalidated since `version` was read (get_item's)."""
        if version is not None:
            keys = [version_key(product_id), item_key(product_id)]
            self._call("fill", self._fill_item, keys=keys, args=[version, body, self.ttl])

    def get_page(self, page: int, per_page: int) -> tuple[bytes | None, bytes | None]:
        """The cached page (None: a miss) and the pages' version (None: Redis failed: do not fill)."""

        def _lookup() -> list:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(PAGES_KEY, page_field(page, per_page))
                pipe.get(PAGES_VERSION_KEY)
                return pipe.execute()

        reply = self._call("hget", _lookup)
        return (reply[0], reply[1] or b"") if reply else (None, None)

    def set_page(self, page: int, per_page: int, body: bytes, version: bytes | None) -> None:
        # The first page sets the hash's clock (EXPIRE NX): later pages must not keep older ones alive.
        if version is not None:
            args = [version, body, self.ttl, page_field(page, per_page)]
            self._call("fill", self._fill_page, keys=[PAGES_VERSION_KEY, PAGES_KEY], args=args)

    def invalidate(self, product_ids: list[int]) -> bool:
        """Drop the products and every page, and give each a new version (so that no read begun before
        can fill them again); False when Redis failed, and then it is retried on a thread until done."""
        # Attempted even while backing off: a stale cache is worse than a slow write.
        try:
            self._invalidate(product_ids)
            return True
        except redis.RedisError as error:
            self.failed("invalidate", error)
            self._retry_later(product_ids)
            return False

    def _invalidate(self, product_ids: list[int | None]) -> None:
        ids = [pid for pid in product_ids if pid is not None]
        with self.client.pipeline(transaction=True) as pipe:
            for pid in ids:
                pipe.set(version_key(pid), secrets.token_hex(8))
            pipe.set(PAGES_VERSION_KEY, secrets.token_hex(8))
            pipe.delete(*[item_key(pid) for pid in ids], PAGES_KEY)
            pipe.execute()

    def _retry_later(self, product_ids: list[int]) -> None:
        until = time.monotonic() + self.ttl + RETRY_MARGIN_SECONDS
        with self._pending_lock:
            for pid in [*product_ids, None]:
                self._pending[pid] = max(self._pending.get(pid, 0.0), until)
            if self._retrying is None or not self._retrying.is_alive():
                self._retrying = threading.Thread(target=self._retry, name="shoplab-invalidate", daemon=True)
                self._retrying.start()

    def _retry(self) -> None:
        while True:
            time.sleep(RETRY_SECONDS)
            now = time.monotonic()
            with self._pending_lock:
                pending = {pid: until for pid, until in self._pending.items() if until > now}
                self._pending = dict(pending)
                if not pending:
                    self._retrying = None
                    return
            try:
                self._invalidate(list(pending))
            except redis.RedisError as error:
                log.warning("invalidating %d cached product(s) failed again: %s", len(pending), error)
                continue
            log.info("invalidated %d cached product(s) that had failed before", len(pending) - 1)
            with self._pending_lock:
                for pid, until in pending.items():
                    if self._pending.get(pid) == until:  # not failed again meanwhile
                        del self._pending[pid]

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
