"""The gateway's gunicorn worker: one event loop per process for the proxy path, threads for the rest.

With a thread per connection (`shoplab.core.worker`), every proxied request woke three threads in turn
(the client's, the gate's next waiter, the GIL's next holder), and on a 2-vCPU VM each cross-CPU wake-up
is an interrupt through the hypervisor: the benchmark counted 7.7-11.2 context switches per request in
the gateway and the product instances together (3.6-4.1 with this worker). Here one thread per worker
reads requests, forwards them on pooled non-blocking upstream connections and writes the answers, each
socket watched by epoll.

Only what the loop can do without blocking is done on it: plain HTTP/1.1 and 1.0 requests (`plainhttp`)
for `/api/products…` and `/api/orders…` within MAX_CONTENT_LENGTH. The first request on a connection that
is anything else (Flask's routes such as /ready, chunked bodies, oversized ones) hands the connection,
with the bytes already read, to a thread of the keep-alive thread worker, which serves it to the end.
The proxy's decisions (`Proxy.plan`, `Attempts`, the FIFO gate) are the same objects the thread path
uses; registry lookups run on a short-lived thread so a slow registry never stalls the loop.
"""

from __future__ import annotations

import errno
import functools
import os
import selectors
import socket
import time

from gunicorn import util

from shoplab.core import plainhttp
from shoplab.core.eventloop import EventLoop, Timer
from shoplab.core.worker import ACCEPT_DELAY_MAX, ACCEPT_DELAY_PER_CONNECTION, KeepAliveThreadWorker
from shoplab.gateway.admission import FifoGate
from shoplab.gateway.loop_upstream import LoopUpstream
from shoplab.gateway.proxy import Attempts, Outcome, Plan, Proxy, route
from shoplab.gateway.upstream import UpstreamResponse

RECV_SIZE = 65536
# Bytes a client may send ahead (pipelining) while its request is being proxied, before we stop reading.
MAX_AHEAD = plainhttp.MAX_HEAD + plainhttp.MAX_BODY
TICK_SECONDS = 1.0


def find_proxy(app) -> Proxy | None:
    """The Proxy in front of the gateway's Flask app (`app.wsgi_app`), if this app has one."""
    proxy = getattr(app, "wsgi_app", None)
    return proxy if isinstance(proxy, Proxy) else None


class _Client:
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
    )

    def __init__(self, sock: socket.socket, addr: tuple, listener: socket.socket, base_environ: dict):
        self.sock = sock
        self.addr = addr
        self.listener = listener
        self.base_environ = base_environ
        self.buffer = b""
        self.busy = False  # a request of it is being proxied or answered
        self.close_after = False
        self.closed = False
        self.peer_closed = False  # the client shut down its side: answer, then close
        self.events = selectors.EVENT_READ
        self.last_active = time.monotonic()
        self.out = memoryview(b"")
        self.callback = None  # _client_ready bound to this client, made once
        self.release = None  # gives the gate's slot back once the answer is sent


class EventLoopWorker(KeepAliveThreadWorker):
    def run(self) -> None:
        self._proxy = find_proxy(self.wsgi)
        if self._proxy is None or not self._plain_http:
            super().run()  # nothing for the loop to do: the thread worker serves everything
            return
        self._loop = EventLoop(*self.PIPE)
        self._upstream = LoopUpstream(self._loop, self._proxy.config.gateway_connect_timeout)
        self._clients: dict[socket.socket, _Client] = {}
        self._lookups_running: dict[str, list] = {}  # service -> requests waiting for its first list
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
        if not isinstance(addr, tuple):  # a Unix socket: the thread worker's
            self._serve_on_thread(listener, sock, addr)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an answer never waits for an ACK
        client = _Client(sock, addr, listener, self._listener_environ[listener])
        self._clients[sock] = client
        client.callback = functools.partial(self._client_ready, client)
        self._loop.register(sock, client.events, client.callback)

    # --- reading requests -----------------------------------------------------------------------

    def _watch(self, client: _Client, events: int) -> None:
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

    def _client_ready(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_WRITE and client.out:
            self._flush(client)
        if events & selectors.EVENT_READ and not client.closed:
            self._client_readable(client)

    def _client_readable(self, client: _Client) -> None:
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
        client.last_active = time.monotonic()
        if not client.busy:
            self._next_request(client)
        elif len(client.buffer) > MAX_AHEAD:
            self._watch(client, selectors.EVENT_WRITE if client.out else 0)  # read on once answered

    def _next_request(self, client: _Client) -> None:
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
        if request is None or request.content_length > self._proxy.config.max_content_length:
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
        service = route(environ["PATH_INFO"])
        if service is None:
            self._handover(client)  # Flask's own routes (/, /health, /ready…) run on a thread
            return
        client.buffer = buffer[total:]
        client.busy = True
        client.close_after = self._count_request() or request.close
        _Forwarding(self, client, service, environ).start()

    def _handover(self, client: _Client) -> None:
        """The rest of this connection is served by a thread of the keep-alive thread worker."""
        self._watch(client, 0)
        del self._clients[client.sock]
        client.closed = True
        self._serve_on_thread(client.listener, client.sock, client.addr, client.buffer)

    # --- answering ------------------------------------------------------------------------------

    def respond(self, client: _Client, environ: dict, outcome: Outcome, started: float, release) -> None:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        client.close_after = client.close_after or not self.alive  # shutting down: say it is the last
        try:
            payload, keeps_alive = _encode(outcome, environ, client.close_after)
        except Exception:  # the instance's answer had a header we may not relay (validated like gunicorn)
            self.log.exception("Invalid answer from upstream for %s %s", method, path)
            outcome = self._proxy.problem(502, "The upstream's answer could not be relayed.", path)
            payload, keeps_alive = _encode(outcome, environ, close=True)
        Proxy.log(environ, outcome, started)
        if client.closed:  # the client left while its request was forwarded
            if release is not None:
                release()
            return
        client.close_after = not keeps_alive
        client.out = memoryview(payload)
        client.release = release
        self._flush(client)

    def _flush(self, client: _Client) -> None:
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

    def _answered(self, client: _Client) -> None:
        release, client.release = client.release, None
        if release is not None:
            release()
        client.busy = False
        client.last_active = time.monotonic()
        if client.close_after or not self.alive or (client.peer_closed and not client.buffer):
            self._close(client)
            return
        self._next_request(client)  # pipelined requests, also from a client that has half-closed

    def _close(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        release, client.release = client.release, None
        if release is not None:
            release()
        self._watch(client, 0)
        del self._clients[client.sock]
        util.close(client.sock)
        self._resume_accepting()

    # --- registry lookups off the loop ----------------------------------------------------------

    def when_looked_up(self, service: str, then) -> None:
        """Call `then()` once `service` has an instance list: a stale list is used at once while a thread
        refreshes it; only the very first lookup is waited for."""
        balancer = self._proxy.balancer
        if not balancer.stale(service):
            then()
            return
        if service not in self._lookups_running:
            self._lookups_running[service] = []
            self._loop.run_in_thread(lambda: balancer.refresh(service), lambda _: self._looked_up(service))
        if balancer.looked_up(service):
            then()
        else:
            self._lookups_running[service].append(then)

    def _looked_up(self, service: str) -> None:
        for then in self._lookups_running.pop(service, []):
            then()

    # --- housekeeping ---------------------------------------------------------------------------

    def _tick(self) -> None:
        self.notify()
        if os.getppid() != self.ppid:
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
        # Idle keep-alive connections (and requests arriving too slowly) end after KEEPALIVE seconds,
        # as the thread worker's socket timeout ends them.
        cutoff = time.monotonic() - (self.cfg.keepalive or self.timeout or 30)
        for client in [c for c in self._clients.values() if not c.busy and c.last_active < cutoff]:
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
            self.log.warning("%d proxied request(s) unanswered after graceful_timeout", len(self._clients))
        for client in list(self._clients.values()):
            self._close(client)
        self._upstream.close()


def _encode(outcome: Outcome, environ: dict, close: bool) -> tuple[bytes, bool]:
    """The answer's bytes, by the thread path's rules (status and headers validated, hop-by-hop headers
    dropped), and whether the connection may carry another request."""
    parts: list[bytes] = []
    answer = plainhttp.PlainResponse(
        parts.append, environ["REQUEST_METHOD"], close, environ["SERVER_PROTOCOL"]
    )
    answer.start_response(outcome.status, outcome.headers)
    answer.send((outcome.body,))
    return b"".join(parts), answer.keeps_alive()


class _Forwarding:
    """One proxied request on the loop: lookup, gate, attempts, answer; each step a callback."""

    __slots__ = (
        "attempts",
        "client",
        "environ",
        "gate",
        "granted",
        "plan",
        "queue_timer",
        "service",
        "started",
        "worker",
    )

    def __init__(self, worker: EventLoopWorker, client: _Client, service: str, environ: dict):
        self.worker = worker
        self.client = client
        self.service = service
        self.environ = environ
        self.started = time.perf_counter()
        self.plan: Plan | None = None
        self.gate: FifoGate | None = None
        self.granted = None
        self.queue_timer: Timer | None = None
        self.attempts: Attempts | None = None

    def start(self) -> None:
        self.worker.when_looked_up(self.service, self._planned)

    def _planned(self) -> None:
        proxy = self.worker._proxy
        candidates = proxy.balancer.candidates(self.service, refresh=False)
        plan = proxy.plan(self.service, self.environ, candidates)
        if isinstance(plan, Outcome):
            self._finish(plan)
            return
        self.plan = plan
        gate = proxy.gates.get(self.service)
        if gate is None:
            self._admitted()
            return
        self.gate = gate
        # A slot may be handed over by a thread leaving the gate: come back to the loop's thread.
        self.granted = functools.partial(self.worker._loop.call_soon_threadsafe, self._admitted)
        if gate.enter_or_queue(self.granted):
            self._admitted()
            return
        self.queue_timer = self.worker._loop.call_later(
            proxy.config.gateway_queue_timeout, self._queue_timed_out
        )

    def _queue_timed_out(self) -> None:
        if self.gate.cancel(self.granted):
            self.gate = self.granted = None  # never admitted: no slot to give back
            self._finish(self.worker._proxy.saturated(self.plan))
        # else: a slot was granted just now and _admitted is on its way

    def _admitted(self) -> None:
        self.granted = None  # it refers back to self: keep per-request garbage free of cycles
        if self.queue_timer is not None:
            self.queue_timer.cancel()
        self.attempts = Attempts(self.worker._proxy, self.plan)
        self._attempt()

    def _attempt(self) -> None:
        step = self.attempts.next()
        if step is None:
            self._finish(self.attempts.gave_up())
            return
        instance, timeout = step
        self.worker._upstream.request(
            instance.address,
            instance.port,
            self.plan.outgoing,
            timeout,
            functools.partial(self._done, instance),
        )

    def _done(self, instance, response: UpstreamResponse | None, error: Exception | None) -> None:
        if error is not None:
            self.attempts.failed(instance, error)
            self._attempt()
            return
        self._finish(self.attempts.answered(instance, response))

    def _finish(self, outcome: Outcome) -> None:
        release = self.gate.leave if self.gate is not None else None
        self.worker.respond(self.client, self.environ, outcome, self.started, release)
