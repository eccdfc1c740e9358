"""What the gateway's two upstream clients share: the request and response types, the failures, and a
lean HTTP/1.1 `ResponseParser` (bytes in, no I/O) that the event loop's pool (`loop_upstream`) reads with.

http.client costs about four times the CPU per response (its header parsing goes through the email
package); on the hot path that is the difference that matters. The upstreams are our own gunicorn
services, so this speaks just enough HTTP/1.1: Content-Length or chunked bodies, keep-alive. The thread
path, which serves only what the loop hands over, uses urllib3 (`blocking_upstream`).
"""

from __future__ import annotations

from dataclasses import dataclass

# Pooled connections idle longer than this are dropped rather than reused: well below the instances'
# keep-alive (75 s), so an instance never closes a connection just as the gateway sends on it.
MAX_IDLE_SECONDS = 30.0
MAX_IDLE_PER_HOST = 64
MAX_HEADER_LINES = 100
MAX_LINE = 65536
MAX_HEAD = MAX_HEADER_LINES * 1024
RECV_SIZE = 65536


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
    # Sending it twice does no harm (proxy.may_resend: safe methods, POST /api/orders with a key).
    may_resend: bool
    # The largest response body taken from the instance (GATEWAY_MAX_RESPONSE_SIZE); more is a failure.
    max_response: int = 4 * 1024 * 1024

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


class ResponseParser:
    """One HTTP/1.1 response, read from bytes as they arrive (no I/O here): the blocking pool below and
    the gateway's event loop feed it alike. Content-Length, chunked and close-delimited bodies; interim
    1xx answers (100 Continue, 103 Early Hints) are skipped."""

    def __init__(self, head_request: bool, max_body: int = 4 * 1024 * 1024):
        self.head_request = head_request
        # The whole answer is held in memory before it is relayed: an instance (or whatever answers at
        # its address) must not make the gateway hold more than this.
        self.max_body = max_body
        self._body_size = 0
        self.keep_alive = False
        self.response: UpstreamResponse | None = None
        self._buffer = b""
        self.received_any = False
        self._status = 0
        self._reason = ""
        self._headers: list[tuple[str, str]] = []
        self._length: int | None = None  # the body's Content-Length (0: no body)
        self._chunked = False
        self._until_close = False
        self._parts: list[bytes] = []
        self._in_head = True

    def feed(self, data: bytes) -> bool:
        """Take the next bytes (b"": the server closed); True once the response is complete.

        Raises _Closed when the server closed before sending anything, ValueError when the bytes are not
        a response or the connection ended inside one."""
        if data:
            self.received_any = True
            self._buffer += data
            if len(self._buffer) > self.max_body + MAX_HEAD:
                raise ValueError(f"response larger than {self.max_body} bytes")
        elif not self.received_any:
            raise _Closed("connection closed before the response")
        while self.response is None:
            if not (self._read_head() if self._in_head else self._read_body(closed=not data)):
                if not data:
                    raise ValueError("connection closed inside the response")
                return False
        if self._buffer:
            self.keep_alive = False  # bytes after the response: nothing we asked for, do not reuse
        return True

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise ValueError("response head too large")
            return False
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        self._buffer = self._buffer[end + 4 :]
        if len(lines) - 1 > MAX_HEADER_LINES:
            raise ValueError("too many response header lines")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (code.isascii() and code.isdigit()):
            raise ValueError(f"malformed status line {lines[0][:80]!r}")
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return True  # an interim answer: the final one follows
        keep_alive = version == "HTTP/1.1"
        headers = []
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            value = value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                length = int(value)
            elif lowered == "transfer-encoding":
                self._chunked = "chunked" in value.lower()
            elif lowered == "connection":
                token = value.lower()
                keep_alive = token != "close" if keep_alive else token == "keep-alive"
            headers.append((name, value))
        self._status, self._reason, self._headers, self.keep_alive = status, reason, headers, keep_alive
        self._in_head = False
        if self.head_request or status in (204, 304) or 100 <= status < 200:
            self._length, self._chunked = 0, False
        elif not self._chunked:
            self._length = self._within_limit(length)
            self._until_close = length is None
            if self._until_close:
                self.keep_alive = False
        return True

    def _within_limit(self, length: int | None) -> int | None:
        if length is not None and length > self.max_body:
            raise ValueError(f"response body of {length} bytes, more than {self.max_body}")
        return length

    def _read_body(self, closed: bool) -> bool:
        if self._chunked:
            return self._read_chunks()
        if self._until_close:
            if not closed:
                self._within_limit(len(self._buffer))
                return False
            body, self._buffer = self._buffer, b""
        else:
            if len(self._buffer) < self._length:
                return False
            body, self._buffer = self._buffer[: self._length], self._buffer[self._length :]
        self._finish(body)
        return True

    def _read_chunks(self) -> bool:
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise ValueError("chunk size line too long")
                return False
            size = int(self._buffer[:end].split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                # The last chunk's line ends where the (dropped) trailers begin; a blank line ends both.
                trailers_end = self._buffer.find(b"\r\n\r\n", end)
                if trailers_end < 0:
                    return False
                self._buffer = self._buffer[trailers_end + 4 :]
                self._finish(b"".join(self._parts))
                return True
            if len(self._buffer) < end + 2 + size + 2:
                if self._body_size + size > self.max_body:
                    raise ValueError(f"chunked response body of more than {self.max_body} bytes")
                return False
            self._body_size += size
            if self._body_size > self.max_body:
                raise ValueError(f"chunked response body of more than {self.max_body} bytes")
            self._parts.append(self._buffer[end + 2 : end + 2 + size])
            self._buffer = self._buffer[end + 2 + size + 2 :]

    def _finish(self, body: bytes) -> None:
        self.response = UpstreamResponse(self._status, self._reason, self._headers, body)
