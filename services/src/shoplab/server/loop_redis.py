"""A Redis client for the event loop: one non-blocking, pipelined connection per worker.

Commands are written as they come and their replies read in order (Redis answers a connection's commands
in the order it got them), so a worker needs no pool and no thread for its cache reads. Only the replies
the cache's reads get are parsed: simple strings, errors, integers and bulk strings; anything else
(an array) is a protocol error here. Any failure (connect, reset, timeout, an unexpected reply) closes the
connection and fails every command waiting on it; the next command connects again. What to do about a
failure (back off, serve from PostgreSQL) is the caller's decision, as with the blocking client.

Kept (make bench 2026-12-05): the product worker on it served 1.41x (through the gateway) and 2.25x
(alone) the product on uvicorn + redis-py's asyncio client with hiredis.
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import time
from collections.abc import Callable

from shoplab.server.eventloop import EventLoop

RECV_SIZE = 65536
# A reply larger than this is not a cached product page: the connection is dropped, not buffered on.
MAX_REPLY = 64 * 1024 * 1024

Reply = bytes | int | None
# then(reply, error): exactly one of them is meaningful; error is None when the reply arrived.
Then = Callable[[Reply, Exception | None], None]


class RedisProtocolError(Exception):
    """The connection failed or answered something this client does not read."""


class RedisReplyError(Exception):
    """Redis answered the command with an error (`-ERR …`)."""


def encode_command(*args: str | bytes | int) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buffer: bytes, start: int) -> tuple[Reply | RedisReplyError, int] | None:
    """The reply starting at `buffer[start]` and the offset after it; None when it is not complete yet."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        if len(buffer) - start > MAX_REPLY:
            raise RedisProtocolError("reply header too long")
        return None
    kind, line = buffer[start : start + 1], buffer[start + 1 : end]
    if kind != b"$":
        return _line_reply(kind, line), end + 2
    length = int(line)
    if length < 0:
        return None, end + 2
    if length > MAX_REPLY:
        raise RedisProtocolError(f"a {length}-byte reply")
    stop = end + 2 + length
    if len(buffer) < stop + 2:
        return None
    if buffer[stop : stop + 2] != b"\r\n":
        raise RedisProtocolError("bulk reply without its CRLF")
    return buffer[end + 2 : stop], stop + 2


def _line_reply(kind: bytes, line: bytes) -> Reply | RedisReplyError:
    if kind == b"+":
        return line
    if kind == b":":
        return int(line)
    if kind == b"-":
        return RedisReplyError(line.decode(errors="replace"))
    raise RedisProtocolError(f"unexpected reply type {kind!r}")


class LoopRedis:
    def __init__(
        self,
        loop: EventLoop,
        address: tuple[str, int] | str,
        timeout: float,
        handshake: tuple[tuple[str | bytes | int, ...], ...] = (),
    ):
        """`address`: (host, port) or a Unix socket's path; `timeout`: for connecting and for each reply;
        `handshake`: commands sent first on every new connection (AUTH, SELECT), each expecting +OK."""
        self.loop = loop
        self.address = address
        self.timeout = timeout
        self.handshake = handshake
        self.sock: socket.socket | None = None
        self.connected = False
        self.events = 0
        self.out = bytearray()
        self.inbuf = b""
        # (then, when it was sent): replies arrive in this order
        self.waiting: collections.deque[tuple[Then, float]] = collections.deque()
        self.watchdog = None

    @classmethod
    def from_connection_kwargs(cls, loop: EventLoop, kwargs: dict, timeout: float) -> LoopRedis | None:
        """A client for the server redis-py's connection settings name; None for what it cannot speak
        (TLS, or settings it does not know)."""
        if kwargs.get("ssl") or kwargs.get("protocol") not in (None, 2, "2"):
            return None
        if kwargs.get("path"):
            address: tuple[str, int] | str = kwargs["path"]
        elif kwargs.get("host"):
            address = (kwargs["host"], int(kwargs.get("port") or 6379))
        else:
            return None
        handshake: list[tuple] = []
        if kwargs.get("password"):
            user = kwargs.get("username")
            handshake.append(("AUTH", user, kwargs["password"]) if user else ("AUTH", kwargs["password"]))
        if int(kwargs.get("db") or 0):
            handshake.append(("SELECT", int(kwargs["db"])))
        return cls(loop, address, timeout, tuple(handshake))

    # --- commands -------------------------------------------------------------------------------

    def call(self, command: tuple[str | bytes | int, ...], then: Then) -> None:
        """Send `command`; `then(reply, error)` runs on the loop once it is answered or has failed."""
        if self.sock is None:
            try:
                self._connect()
            except OSError as error:
                then(None, RedisProtocolError(f"connect: {error}"))
                return
        self._queue(encode_command(*command), then)

    def _queue(self, packed: bytes, then: Then) -> None:
        self.out += packed
        self.waiting.append((then, time.monotonic()))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._check_timeout)
        if self.connected and self.events == selectors.EVENT_READ:
            self._write()

    def _handshake_reply(self, reply: Reply, error: Exception | None) -> None:
        if error is None and reply != b"OK":
            self._fail(RedisProtocolError(f"handshake answered {reply!r}"))

    # --- the connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        if family == socket.AF_INET and ":" in self.address[0]:
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            raise OSError(code, errno.errorcode.get(code, str(code)))
        self.sock, self.connected, self.inbuf = sock, False, b""
        self.events = selectors.EVENT_WRITE
        self.loop.register(sock, self.events, self._ready)
        for command in self.handshake:
            self._queue(encode_command(*command), self._handshake_reply)

    def _watch(self, events: int) -> None:
        if events != self.events:
            self.loop.modify(self.sock, events, self._ready)
            self.events = events

    def _ready(self, events: int) -> None:
        if not self.connected and events & selectors.EVENT_WRITE:
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._fail(RedisProtocolError(f"connect: {errno.errorcode.get(code, code)}"))
                return
            self.connected = True
        if events & selectors.EVENT_WRITE:
            self._write()
        if events & selectors.EVENT_READ and self.sock is not None:
            self._read()

    def _write(self) -> None:
        try:
            sent = self.sock.send(self.out) if self.out else 0
        except BlockingIOError:
            sent = 0
        except OSError as error:
            self._fail(RedisProtocolError(f"send: {error}"))
            return
        del self.out[:sent]
        self._watch(selectors.EVENT_READ | selectors.EVENT_WRITE if self.out else selectors.EVENT_READ)

    def _read(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(RedisProtocolError(f"recv: {error}"))
            return
        if not data:
            self._fail(RedisProtocolError("Redis closed the connection"))
            return
        buffer, offset = self.inbuf + data, 0
        try:
            while self.waiting:
                parsed = parse_reply(buffer, offset)
                if parsed is None:
                    break
                reply, offset = parsed
                then, _sent = self.waiting.popleft()
                if isinstance(reply, RedisReplyError):
                    then(None, reply)
                else:
                    then(reply, None)
                if self.sock is None:
                    return  # a handshake reply failed the connection
        except (RedisProtocolError, ValueError) as error:
            self._fail(RedisProtocolError(f"reply: {error}"))
            return
        if offset < len(buffer) and not self.waiting:
            self._fail(RedisProtocolError("a reply nobody asked for"))
            return
        self.inbuf = buffer[offset:]

    def _check_timeout(self) -> None:
        self.watchdog = None
        if not self.waiting:
            return
        oldest = self.waiting[0][1]
        late = time.monotonic() - oldest - self.timeout
        if late >= 0:
            self._fail(RedisProtocolError(f"no reply within {self.timeout} s"))
        else:
            self.watchdog = self.loop.call_later(-late, self._check_timeout)

    def _fail(self, error: Exception) -> None:
        """Close the connection and fail everything waiting on it (a half-read reply must never be read
        as the next command's)."""
        waiting, self.waiting = self.waiting, collections.deque()
        self.close()
        for then, _sent in waiting:
            then(None, error)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if self.sock is not None:
            self.loop.unregister(self.sock)
            self.sock.close()
        self.sock, self.connected, self.events = None, False, 0
        self.out.clear()
        self.inbuf = b""
