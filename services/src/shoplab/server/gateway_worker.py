"""The gateway's gunicorn worker: one event loop per process for the proxy path, threads for the rest.

With a thread per connection (`shoplab.server.worker`), every proxied request woke three threads in turn
(the client's, the gate's next waiter, the GIL's next holder): the benchmark counted 7.7-11.2 context
switches per request in the gateway and the product instances together (3.6-4.1 with this worker).
`shoplab.server.loop_worker` reads and answers the requests; this module forwards them on pooled
non-blocking upstream connections.

The loop takes plain requests for `/api/products…` and `/api/orders…`; Flask's own routes (/ready, /,
404s) hand their connection to a thread. The proxy's decisions (`Proxy.plan`, `Attempts`, the FIFO gate)
are the same objects the thread path uses; registry lookups run on a short-lived thread so a slow
registry never stalls the loop.

Kept (make bench 2026-12-05, 5 interleaved rounds): 12,186 req/s through the gateway against 6,833
for the same Proxy on uvicorn (uvloop, httptools) + aiohttp, the best kept alternative.
"""

from __future__ import annotations

import functools
import time

from shoplab.gateway.admission import FifoGate
from shoplab.gateway.proxy import Attempts, Outcome, Plan, Proxy, route
from shoplab.server.eventloop import Timer
from shoplab.server.loop_upstream import LoopUpstream
from shoplab.server.loop_worker import LoopClient, LoopHttpWorker, encode_answer, wsgi_layer
from shoplab.server.upstream import UpstreamResponse


class EventLoopWorker(LoopHttpWorker):
    def loop_setup(self) -> bool:
        self._proxy = wsgi_layer(self.wsgi, Proxy)
        if self._proxy is None:
            return False
        self.max_content_length = self._proxy.config.max_content_length
        self._upstream = LoopUpstream(self._loop, self._proxy.config.gateway_connect_timeout)
        self._lookups_running: dict[str, list] = {}  # service -> requests waiting for its first list
        return True

    def loop_takes(self, environ: dict) -> bool:
        return route(environ["PATH_INFO"]) is not None  # Flask's own routes (/, /health…) run on a thread

    def loop_serve(self, client: LoopClient, environ: dict) -> None:
        _Forwarding(self, client, route(environ["PATH_INFO"]), environ).start()

    def loop_close(self) -> None:
        self._upstream.close()

    def respond(self, client: LoopClient, environ: dict, outcome: Outcome, started: float, release) -> None:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        close = self.closing_after(client)
        try:
            payload, keeps_alive = _encode(environ, outcome, close)
        except Exception:  # the instance's answer had a header we may not relay (validated like gunicorn)
            self.log.exception("Invalid answer from upstream for %s %s", method, path)
            outcome = self._proxy.problem(502, "The upstream's answer could not be relayed.", path)
            payload, keeps_alive = _encode(environ, outcome, close=True)
        Proxy.log(environ, outcome, started)
        self.answer(client, payload, keeps_alive, release)

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


def _encode(environ: dict, outcome: Outcome, close: bool) -> tuple[bytes, bool]:
    return encode_answer(environ, outcome.status, outcome.headers, outcome.body, close)


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

    def __init__(self, worker: EventLoopWorker, client: LoopClient, service: str, environ: dict):
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
        if self.client.closed and self.gate is not None:
            self.gate.leave()  # the client left while queued: its slot goes to the next one at once
            return
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
