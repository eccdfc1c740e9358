"""Time limits on a client connection, so that no client can hold one (and what it holds) forever.

- A request, head and body, must arrive within REQUEST_TIMEOUT from its first byte; a connection's first
  request, from the connection's start (slowloris: a byte now and then used to keep it open for good).
- Between requests a keep-alive connection may wait KEEPALIVE seconds.
- An answer must be taken by the client within WRITE_TIMEOUT (a client that never reads).
- One client address holds at most MAX_CONNECTIONS_PER_CLIENT connections per worker process.

The thread worker (`server.worker`) applies them with the classes here; the event loop (`server.loop_worker`)
with the same numbers on its own clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    request_timeout: float = 10.0
    idle_timeout: float = 75.0
    write_timeout: float = 10.0
    per_client: int = 128

    @classmethod
    def of(cls, config, keepalive: float, worker_connections: int) -> Limits:
        """From the service's Config (None: a worker run without one keeps the defaults)."""
        if config is None:
            return cls(idle_timeout=keepalive, per_client=worker_connections)
        return cls(config.request_timeout, keepalive, config.write_timeout, config.max_connections_per_client)


class TimedReads:
    """recv() on a blocking socket, bounded by the request deadline or the idle time between requests.
    gunicorn's parser reads through it as well (it only needs recv, gettimeout and settimeout)."""

    def __init__(self, sock, limits: Limits, started: float | None):
        self.sock = sock
        self.limits = limits
        # When the request being read began (None: waiting for the next one).
        self.started = started

    def recv(self, size: int) -> bytes:
        if self.started is None:
            self.sock.settimeout(self.limits.idle_timeout)
            data = self.sock.recv(size)
            if data:
                self.started = time.monotonic()
            return data
        left = self.started + self.limits.request_timeout - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive within REQUEST_TIMEOUT")
        self.sock.settimeout(left)
        return self.sock.recv(size)

    def next_request(self, pending: bool) -> None:
        """A request was read whole; `pending`: bytes of the next one are in hand already (its clock runs)."""
        self.started = time.monotonic() if pending else None

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)


def send_within(sock, seconds: float) -> Callable[[bytes], None]:
    """A sendall for one answer: all of it must be taken within `seconds` (TimeoutError otherwise)."""
    deadline = time.monotonic() + seconds

    def send(data: bytes) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client did not take the answer within WRITE_TIMEOUT")
        sock.settimeout(left)
        sock.sendall(data)  # since Python 3.5 the timeout bounds the whole sendall

    return send


class PerClient:
    """Open connections per client address, at most `limit` each (thread-safe)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, addr) -> bool:
        if not isinstance(addr, tuple):  # a Unix socket: one local client, nothing to share out
            return True
        with self._lock:
            held = self._open.get(addr[0], 0)
            if held >= self.limit:
                return False
            self._open[addr[0]] = held + 1
            return True

    def release(self, addr) -> None:
        if not isinstance(addr, tuple):
            return
        with self._lock:
            held = self._open.get(addr[0], 0) - 1
            if held > 0:
                self._open[addr[0]] = held
            else:
                self._open.pop(addr[0], None)
