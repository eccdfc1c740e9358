"""A lean keep-alive HTTP/1.1 client for the proxy path: pooled http.client connections, no parsing."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

# Connections idle longer than this are dropped rather than reused: well below the upstream's
# keep-alive (75 s), so the server never closes a connection just as we send on it.
MAX_IDLE_SECONDS = 30.0
MAX_IDLE_PER_HOST = 64


class NotReached(Exception):
    """The request never left: connecting failed. Safe to retry anywhere, whatever the method."""


class Broken(Exception):
    """The request was (maybe) sent but no complete response came back."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


class UpstreamResponse:
    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes | None
    # True for a GET or a POST with an Idempotency-Key: sending it twice does no harm.
    may_resend: bool


class ConnectionPool:
    def __init__(self, connect_timeout: float):
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque] = {}
        self._lock = threading.Lock()

    def _checkout(self, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        key = (host, port)
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn, last_used = idle.pop()  # LIFO: the warmest connection first
                if now - last_used < MAX_IDLE_SECONDS:
                    return conn, True
                conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except OSError as error:
            conn.close()
            raise NotReached(f"{host}:{port}: {error}") from error
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _checkin(self, host: str, port: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((host, port), deque())
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def request(self, host: str, port: int, outgoing: UpstreamRequest, timeout: float) -> UpstreamResponse:
        conn, reused = self._checkout(host, port)
        try:
            return self._exchange(host, port, conn, outgoing, timeout)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            conn.close()
            if not reused or not outgoing.may_resend:
                raise Broken(f"{host}:{port}: {error}") from error
            # Most likely a pooled connection the server had already closed (e.g. it restarted): resend on
            # a fresh one, but only when resending is harmless.
            conn, _ = self._checkout_fresh(host, port)
            try:
                return self._exchange(host, port, conn, outgoing, timeout)
            except (OSError, http.client.HTTPException) as second:
                conn.close()
                raise Broken(f"{host}:{port}: {second}", isinstance(second, TimeoutError)) from second
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise Broken(f"{host}:{port}: {error}", isinstance(error, TimeoutError)) from error

    def _checkout_fresh(self, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            for conn, _ in self._idle.pop((host, port), ()):
                conn.close()
        return self._checkout(host, port)

    def _exchange(
        self,
        host: str,
        port: int,
        conn: http.client.HTTPConnection,
        outgoing: UpstreamRequest,
        timeout: float,
    ) -> UpstreamResponse:
        conn.sock.settimeout(timeout)
        conn.putrequest(outgoing.method, outgoing.target, skip_host=True, skip_accept_encoding=True)
        for name, value in outgoing.headers:
            conn.putheader(name, value)
        conn.endheaders(outgoing.body)
        response = conn.getresponse()
        data = response.read()
        result = UpstreamResponse(response.status, response.reason, response.getheaders(), data)
        if response.will_close:
            conn.close()
        else:
            self._checkin(host, port, conn)
        return result
