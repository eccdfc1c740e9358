"""A lean keep-alive HTTP/1.1 client for the proxy path: pooled raw sockets, bodies passed as bytes.

http.client costs about four times the CPU per request (its header parsing goes through the email
package); on the benchmark's hot path that is the difference that matters. The upstreams are our own
gunicorn services, so this speaks just enough HTTP/1.1: Content-Length or chunked bodies, keep-alive.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

# Connections idle longer than this are dropped rather than reused: well below the upstream's
# keep-alive (75 s), so the server never closes a connection just as we send on it.
MAX_IDLE_SECONDS = 30.0
MAX_IDLE_PER_HOST = 64
MAX_HEADER_LINES = 100
MAX_LINE = 65536


class NotReached(Exception):
    """The request never left: connecting failed. Safe to retry anywhere, whatever the method."""


class Broken(Exception):
    """The request was (maybe) sent but no complete response came back."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


class _Closed(Exception):
    """The server closed the connection before sending a single byte of the response."""


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    # True for a GET or a POST with an Idempotency-Key: sending it twice does no harm.
    may_resend: bool

    def encode(self, host_header: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host_header}"]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class UpstreamResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Head:
    status: int
    reason: str
    keep_alive: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    length: int | None = None
    chunked: bool = False


class Connection:
    def __init__(self, host: str, port: int, connect_timeout: float):
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise NotReached(f"{host}:{port}: {error}") from error
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.last_used = time.monotonic()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def exchange(self, payload: bytes, head_request: bool, timeout: float) -> tuple[UpstreamResponse, bool]:
        """Send one request, read one response; returns it and whether the connection can be reused."""
        self.sock.settimeout(timeout)
        self.sock.sendall(payload)
        head = self._read_head()
        while 100 <= head.status < 200 and head.status != 101:
            head = self._read_head()  # an interim answer (100 Continue, 103 Early Hints): the final follows
        status = head.status
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif head.chunked:
            body = self._read_chunked()
        elif head.length is not None:
            body = self.reader.read(head.length)
            if len(body) != head.length:
                raise ValueError("connection closed inside the response body")
        else:
            body = self.reader.read()  # delimited by the server closing the connection
            head.keep_alive = False
        self.last_used = time.monotonic()
        return UpstreamResponse(status, head.reason, head.headers, body), head.keep_alive

    def _read_head(self) -> _Head:
        status_line = self.reader.readline(MAX_LINE)
        if not status_line:
            raise _Closed("connection closed before the response")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"malformed status line {status_line[:80]!r}")
        head = _Head(int(code), reason, keep_alive=version == "HTTP/1.1")
        for _ in range(MAX_HEADER_LINES):
            line = self.reader.readline(MAX_LINE)
            if line in (b"\r\n", b"\n"):
                return head
            if not line:
                raise ValueError("connection closed inside the response headers")
            name, _, value = line.decode("latin-1").partition(":")
            value = value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                head.length = int(value)
            elif lowered == "transfer-encoding":
                head.chunked = "chunked" in value.lower()
            elif lowered == "connection":
                token = value.lower()
                head.keep_alive = token != "close" if head.keep_alive else token == "keep-alive"
            head.headers.append((name, value))
        raise ValueError("too many response header lines")

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size_line = self.reader.readline(MAX_LINE)
            size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while self.reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped
                return b"".join(parts)
            parts.append(self.reader.read(size))
            self.reader.readline(MAX_LINE)


class ConnectionPool:
    def __init__(self, connect_timeout: float):
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[Connection]] = {}
        self._lock = threading.Lock()

    def _checkout(self, key: tuple[str, int]) -> tuple[Connection, bool]:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()  # LIFO: the warmest connection first
                if now - conn.last_used < MAX_IDLE_SECONDS:
                    return conn, True
                conn.close()
        return Connection(key[0], key[1], self.connect_timeout), False

    def _checkin(self, key: tuple[str, int], conn: Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, deque())
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def request(self, host: str, port: int, outgoing: UpstreamRequest, timeout: float) -> UpstreamResponse:
        key = (host, port)
        payload = outgoing.encode(f"{host}:{port}")
        head = outgoing.method == "HEAD"
        conn, reused = self._checkout(key)
        try:
            response, keep_alive = conn.exchange(payload, head, timeout)
        except (_Closed, ConnectionResetError, BrokenPipeError) as error:
            conn.close()
            if not reused or not outgoing.may_resend:
                raise Broken(f"{host}:{port}: {error}") from error
            # Most likely a pooled connection the server had already closed (e.g. it restarted):
            # resend on a fresh one, but only when resending is harmless.
            conn, _ = self._fresh(key)
            try:
                response, keep_alive = conn.exchange(payload, head, timeout)
            except (OSError, ValueError, _Closed) as second:
                conn.close()
                raise Broken(f"{host}:{port}: {second}", isinstance(second, TimeoutError)) from second
        except (OSError, ValueError) as error:
            conn.close()
            raise Broken(f"{host}:{port}: {error}", isinstance(error, TimeoutError)) from error
        if keep_alive:
            self._checkin(key, conn)
        else:
            conn.close()
        return response

    def _fresh(self, key: tuple[str, int]) -> tuple[Connection, bool]:
        with self._lock:
            stale = self._idle.pop(key, ())
        for conn in stale:
            conn.close()
        return Connection(key[0], key[1], self.connect_timeout), False
