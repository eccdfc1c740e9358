"""Idempotency-Key handling: a replay returns the stored response and creates nothing.

The key row is inserted in the same transaction as the order. A concurrent request with the same key
blocks on the primary key until the first commits, then finds the stored response; if the first rolled
back (e.g. out of stock), the key is free again and the retry is evaluated afresh.

A key is bound to the body it came with (another body: 422) for IDEMPOTENCY_KEY_TTL (24 h); after that it
is free for a new request, and expired rows are deleted now and then.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg2

from shoplab.core.problems import ProblemError

MAX_KEY_LENGTH = 255
# Expired keys are deleted at most this often per process (after an order, on its own connection).
PURGE_EVERY_SECONDS = 3600.0

log = logging.getLogger("shoplab.idempotency")
_purge_lock = threading.Lock()
_purged_at = [time.monotonic()]


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str


def checked_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not raw.isascii() or not raw.isprintable():
        raise ProblemError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
    return raw


def fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(cur, key: str, request_fingerprint: str, ttl: float) -> StoredResponse | None:
    """Claim the key for this transaction (None), or return the response stored under it. A key older
    than `ttl` seconds is claimed afresh, whatever it was used for."""
    cur.execute(
        "INSERT INTO idempotency_keys (key, fingerprint) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, "
        "response_body = NULL, created_at = now() "
        "WHERE idempotency_keys.created_at < now() - %s * interval '1 second' "
        "RETURNING key",
        (key, request_fingerprint, ttl),
    )
    if cur.fetchone() is not None:
        return None
    cur.execute("SELECT fingerprint, status_code, response_body FROM idempotency_keys WHERE key = %s", (key,))
    stored_fingerprint, status, body = cur.fetchone()
    if stored_fingerprint != request_fingerprint:
        raise ProblemError(422, "This Idempotency-Key was already used with a different request body.")
    return StoredResponse(status, body)


def store(cur, key: str, status: int, body: str) -> None:
    cur.execute(
        "UPDATE idempotency_keys SET status_code = %s, response_body = %s WHERE key = %s", (status, body, key)
    )


def purge_expired(db, ttl: float) -> None:
    """Delete keys older than `ttl` seconds, at most once per PURGE_EVERY_SECONDS in this process."""
    now = time.monotonic()
    if now - _purged_at[0] < PURGE_EVERY_SECONDS or not _purge_lock.acquire(blocking=False):
        return
    try:
        _purged_at[0] = now
        with db.cursor(autocommit=True) as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE created_at < now() - %s * interval '1 second'", (ttl,)
            )
            if cur.rowcount:
                log.info("deleted %d expired idempotency key(s)", cur.rowcount)
    except (psycopg2.Error, ProblemError) as error:  # the order is placed: its answer must not suffer
        log.warning("deleting expired idempotency keys failed (next try in an hour): %s", error)
    finally:
        _purge_lock.release()
