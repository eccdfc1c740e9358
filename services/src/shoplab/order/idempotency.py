"""Idempotency-Key handling: a replay returns the stored response and creates nothing.

The key row is inserted in the same transaction as the order. A concurrent request with the same key
blocks on the primary key until the first commits, then finds the stored response; if the first rolled
back (e.g. out of stock), the key is free again and the retry is evaluated afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shoplab.core.problems import ProblemError

MAX_KEY_LENGTH = 255


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


def claim(cur, key: str, request_fingerprint: str) -> StoredResponse | None:
    """Claim the key for this transaction (None), or return the response stored under it."""
    cur.execute(
        "INSERT INTO idempotency_keys (key, fingerprint) VALUES (%s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, request_fingerprint),
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
