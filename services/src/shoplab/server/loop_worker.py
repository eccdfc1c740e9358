"""A gunicorn worker with one event loop per process: plain HTTP requests are read and answered on it.

With a thread per connection (`shoplab.server.worker`), every request woke threads in turn (the client's,
the next holder of the GIL, in the gateway the gate's next waiter), and on a 2-vCPU VM each cross-CPU
wake-up is an interrupt through the hypervisor. Here one thread per worker reads requests, hands each to
the service's handler and writes the answers, each socket watched by epoll.

Only plain HTTP/1.1 and 1.0 requests (`plainhttp`) within the service's MAX_CONTENT_LENGTH are read on
the loop, and a subclass decides which of them it serves (`loop_takes`) and how (`loop_serve`, which
must not block; it ends with `answer`). The first request on a connection that is anything else (chunked
or oversized bodies, what a subclass does not take) hands the connection, with the bytes already read,
to a thread of the keep-alive thread worker, which serves it to the end with gunicorn's parser.

Kept (make bench 2026-12-05, 5 interleaved rounds, gateway cached GET): 12,186 req/s, p99 22.7 ms,
against uvicorn on uvloop 6,833 (45.2 ms), gevent 5,798 (33.9), gthread 2,911 (51.9): 1.78x the best.
"""

from __future__ import annotations

import errno
import functools
import os
import selectors
import socket
import time

from gunicorn import util

from shoplab.server import plainhttp
from shoplab.server.eventloop import EventLoop
from shoplab.server.worker import ACCEPT_DELAY_MAX, ACCEPT_DELAY_PER_CONNECTION, KeepAliveThreadWorker

RECV_SIZE = 65536
# Bytes a client may send ahead (pipelining) while its request is being served, before we stop reading.
MAX_AHEAD = plainhttp.MAX_HEAD + plainhttp.MAX_BODY
TICK_SECONDS = 1.0


class LoopClient:
    __slots__ = (
        "addr",
        "base_environ",
        "buffer",
        "busy",
        "callback",
        "close_after",
        "closed",
        "events",
        "last_active",
        "listener",
        "out",
        "peer_closed",
        "release",
        "sock",
        "started",
        "write_by",
    )

    def __init__(self, sock: socket.socket, addr: tuple, listener: socket.socket, base_environ: dict):
        self.sock = sock
        self.addr = addr
        self.listener = listener
        self.base_environ = base_environ
        self.buffer = b""
        self.busy = False  # a request of it is being served
        self.close_after = False
        self.closed = False
        self.peer_closed = False  # the client shut down its side: answer, then close
        self.events = selectors.EVENT_READ
        self.last_active = time.monotonic()  # idle since (between requests, nothing of the next one yet)
        # The request being read began then (core.deadlines): the first one from the connection's start.
        self.started: float | None = self.last_active
        self.write_by = 0.0  # the answer being written must be taken by then
        self.out = memoryview(b"")
        self.callback = None  # _client_ready bound to this client, made once
        self.release = None  # called once the answer is sent (the gateway gives its gate's slot back)


def wsgi_layer(app, kind: type):
    """The `kind` middleware in front of a Flask app (`app.wsgi_app`), or None if it has none."""
    layer = getattr(app, "wsgi_app", None)
    return layer if isinstance(layer, kind) else None


def encode_answer(environ: dict, status: str, headers: list, body: bytes, close: bool) -> tuple[bytes, bool]:
    """The answer's bytes, by the thread path's rules (status and headers validated, hop-by-hop headers
    dropped), and whether the connection may carry another request."""
    method, version = environ["REQUEST_METHOD"], environ["SERVER_PROTOCOL"]
    sized = plainhttp.encode_sized(method, version, status, headers, body, close=close)
    if sized is not None:
        return sized
    parts: list[bytes] = []
    answer = plainhttp.PlainResponse(parts.append, method, close, version)
    answer.start_response(status, headers)
    answer.send((body,))
    return b"".join(parts), answer.keeps_alive()


def _overdue(client: LoopClient, now: float, limits) -> bool:
    if client.busy:
        return bool(client.out) and now > client.write_by  # (still inside the service: its own timeouts)
    if client.started is not None:
        return now - client.started > limits.request_timeout
    return now - client.last_active > limits.idle_timeout


class LoopHttpWorker(KeepAliveThreadWorker):
    """The loop's connection handling; subclasses say what they serve on it."""

    # Bodies larger than this are not read on the loop (a subclass sets its service's limit).
    max_content_length = plainhttp.MAX_BODY

    # --- what a subclass provides ---------------------------------------------------------------

    def loop_setup(self) -> bool:
        """Prepare the subclass's part (self._loop exists); False: the thread worker serves everything."""
        raise NotImplementedError

    def loop_takes(self, environ: dict) -> bool:
        """Whether the loop serves this request; False hands the connection over to a thread."""
        raise NotImplementedError

    def loop_serve(self, client: LoopClient, environ: dict) -> None:
        """Serve one request without blocking; call `answer` (now or from a later callback)."""
        raise NotImplementedError

    def loop_close(self) -> None:
        """Release the subclass's resources once the loop's connections are closed."""

    # --- running --------------------------------------------------------------------------------

    def run(self) -> None:
        if not self._plain_http:
            super().run()  # every request is gunicorn's to parse: the thread worker serves them
            return
        self._loop = EventLoop(*self.PIPE)
        if not self.loop_setup():
            self._loop.close()
            super().run()
            return
        self._clients: dict[socket.socket, LoopClient] = {}
        self._listener_environ = {}
        self._accepting = False
        for listener in self.sockets:
            listener.setblocking(False)
            self._listener_environ[listener] = plainhttp.listener_environ(
                self._gunicorn_environ, listener.getsockname()
            )
        self._resume_accepting()
        self._loop.call_later(TICK_SECONDS, self._tick)
        while self.alive:
            self._loop.run_once(TICK_SECONDS)
        self._drain()
        self._shutdown()  # the thread worker's: closes the listeners, waits for the threads' connections

    # --- accepting ------------------------------------------------------------------------------

    def _held(self) -> int:
        return len(self._clients) + len(self._connections)

    def _resume_accepting(self) -> None:
        if self._accepting or not self.alive or self._held() >= self.cfg.worker_connections:
            return
        for listener in self.sockets:
            self._loop.register(listener, selectors.EVENT_READ, functools.partial(self._acceptable, listener))
        self._accepting = True

    def _pause_accepting(self) -> None:
        if self._accepting:
            for listener in self.sockets:
                self._loop.unregister(listener)
            self._accepting = False

    def _acceptable(self, listener: socket.socket, _events: int) -> None:
        held = self._held()
        if held >= self.cfg.worker_connections:
            self._pause_accepting()  # the rest wait in the backlog until one of ours closes
        elif self.cfg.workers > 1 and held:
            # The thread worker's balancing, without sleeping: a worker holding more connections waits
            # a little longer before accepting, so the less loaded one usually takes the connection.
            self._pause_accepting()
            delay = min(ACCEPT_DELAY_PER_CONNECTION * held, ACCEPT_DELAY_MAX)
            self._loop.call_later(delay, self._accept_late, listener)
        else:
            self._accept_one(listener)

    def _accept_late(self, listener: socket.socket) -> None:
        if self.alive:
            self._accept_one(listener)
            self._resume_accepting()

    def _accept_one(self, listener: socket.socket) -> None:
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as error:
            if error.errno in (errno.ECONNABORTED, errno.EPROTO):
                return
            raise
        util.close_on_exec(sock)
        if not self._per_client.admit(addr):
            util.close(sock)  # past its share: the other clients keep theirs
            return
        if not isinstance(addr, tuple):  # a Unix socket: the thread worker's
            self._serve_on_thread(listener, sock, addr)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an answer never waits for an ACK
        client = LoopClient(sock, addr, listener, self._listener_environ[listener])
        self._clients[sock] = client
        client.callback = functools.partial(self._client_ready, client)
        self._loop.register(sock, client.events, client.callback)

    # --- reading requests -----------------------------------------------------------------------

    def _watch(self, client: LoopClient, events: int) -> None:
        """Watch `client` for `events` (0: not at all); one epoll_ctl only when they change."""
        if client.events == events:
            return
        if not events:
            self._loop.unregister(client.sock)
        elif not client.events:
            self._loop.register(client.sock, events, client.callback)
        else:
            self._loop.modify(client.sock, events, client.callback)
        client.events = events

    def _client_ready(self, client: LoopClient, events: int) -> None:
        if events & selectors.EVENT_WRITE and client.out:
            self._flush(client)
        if events & selectors.EVENT_READ and not client.closed:
            self._client_readable(client)

    def _client_readable(self, client: LoopClient) -> None:
        try:
            data = client.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._close(client)
            return
        if not data:
            if client.busy:  # half-closed after its request: it still gets the answer
                client.peer_closed = True
                self._watch(client, selectors.EVENT_WRITE if client.out else 0)
            else:
                self._close(client)
            return
        client.buffer += data
        if client.started is None and not client.busy:
            client.started = time.monotonic()  # a byte now and then does not keep a request going forever
        if not client.busy:
            self._next_request(client)
        elif len(client.buffer) > MAX_AHEAD:
            self._watch(client, selectors.EVENT_WRITE if client.out else 0)  # read on once answered

    def _next_request(self, client: LoopClient) -> None:
        buffer = client.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if client.peer_closed:
                self._close(client)  # half a request, and no more will come
            elif plainhttp.for_gunicorn_already(buffer):
                self._handover(client)
            elif client.events != selectors.EVENT_READ:
                self._watch(client, selectors.EVENT_READ)
            return
        request = plainhttp.parse_head(buffer[:end], self._limits)
        if request is None or request.content_length > self.max_content_length:
            self._handover(client)  # not plain, or a 413 that gunicorn's reader drains properly
            return
        total = end + 4 + request.content_length
        if len(buffer) < total:
            if client.peer_closed:
                self._close(client)
            elif client.events != selectors.EVENT_READ:
                self._watch(client, selectors.EVENT_READ)
            return  # the body is still on its way
        environ = plainhttp.build_environ(
            request, buffer[end + 4 : total], client.base_environ, client.sock, client.addr
        )
        if not self.loop_takes(environ):
            self._handover(client)
            return
        client.buffer = buffer[total:]
        client.started = None
        client.busy = True
        client.close_after = self._count_request() or request.close
        self.loop_serve(client, environ)

    def _handover(self, client: LoopClient) -> None:
        """The rest of this connection is served by a thread of the keep-alive thread worker."""
        self._watch(client, 0)
        del self._clients[client.sock]
        client.closed = True
        # Still admitted (_per_client): the thread releases it; the request's deadline runs on there.
        self._serve_on_thread(client.listener, client.sock, client.addr, client.buffer, client.started)

    # --- answering ------------------------------------------------------------------------------

    def answer(self, client: LoopClient, payload: bytes, keeps_alive: bool, release=None) -> None:
        """Send `payload` (from `encode_answer`); `release()` runs once it is sent or the client is gone."""
        if client.closed:  # the client left while its request was served
            if release is not None:
                release()
            return
        client.close_after = not keeps_alive
        client.out = memoryview(payload)
        client.release = release
        client.write_by = time.monotonic() + self._time_limits.write_timeout
        self._flush(client)
        if client.out and client.release is not None:
            # Not taken at once: the answer waits here for a slow (or never reading) client. The request
            # has left the service, so a gateway's admission slot goes back now: such clients must not
            # keep every order waiting in the queue (a thread, which blocks writing, keeps it until sent).
            release, client.release = client.release, None
            release()

    def closing_after(self, client: LoopClient) -> bool:
        """Whether the answer being built is the connection's last (shutting down: say so)."""
        client.close_after = client.close_after or not self.alive
        return client.close_after

    def _flush(self, client: LoopClient) -> None:
        try:
            sent = client.sock.send(client.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(client)
            return
        client.out = client.out[sent:]
        if client.out:
            self._watch(
                client,
                selectors.EVENT_WRITE if client.peer_closed else selectors.EVENT_READ | selectors.EVENT_WRITE,
            )
            return
        self._answered(client)

    def _answered(self, client: LoopClient) -> None:
        release, client.release = client.release, None
        if release is not None:
            release()
        client.busy = False
        client.last_active = time.monotonic()
        client.started = client.last_active if client.buffer else None  # a pipelined request's clock runs
        if client.close_after or not self.alive or (client.peer_closed and not client.buffer):
            self._close(client)
            return
        self._next_request(client)  # pipelined requests, also from a client that has half-closed

    def _close(self, client: LoopClient) -> None:
        if client.closed:
            return
        client.closed = True
        release, client.release = client.release, None
        if release is not None:
            release()
        self._watch(client, 0)
        del self._clients[client.sock]
        self._per_client.release(client.addr)
        util.close(client.sock)
        self._resume_accepting()

    # --- housekeeping ---------------------------------------------------------------------------

    def _tick(self) -> None:
        self.notify()
        if os.getppid() != self.ppid:
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
        # The limits of core.deadlines, as the thread worker's socket timeouts apply them: idle keep-alive
        # connections end after KEEPALIVE, a request must arrive within REQUEST_TIMEOUT of its first byte,
        # and an answer must be taken within WRITE_TIMEOUT (closing gives back what it held).
        now = time.monotonic()
        limits = self._time_limits
        for client in [c for c in self._clients.values() if _overdue(c, now, limits)]:
            self._close(client)
        self._resume_accepting()  # a thread's connection may have ended below WORKER_CONNECTIONS
        self._loop.call_later(TICK_SECONDS, self._tick)

    def _drain(self) -> None:
        """Graceful shutdown of the loop's part: no new connections, idle ones closed now, requests in
        flight answered (with Connection: close) within graceful_timeout."""
        self._pause_accepting()
        for listener in self.sockets:
            util.close(listener)  # refused from now on, rather than left waiting in a backlog nobody serves
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while True:
            for client in [c for c in self._clients.values() if not c.busy]:
                self._close(client)
            if not self._clients or time.monotonic() >= deadline:
                break
            self.notify()
            self._loop.run_once(0.05)
        if self._clients:
            self.log.warning("%d request(s) unanswered after graceful_timeout", len(self._clients))
        for client in list(self._clients.values()):
            self._close(client)
        self.loop_close()
