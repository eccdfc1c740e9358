"""The proxy path: a plain WSGI callable in front of the gateway's Flask app.

`/api/products…` and `/api/orders…` never enter Flask's routing: this is the hot path of the benchmark,
so it does the least work that is correct. Bodies pass through as bytes and are never parsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote

from shoplab.core.config import Config
from shoplab.core.logs import log_request
from shoplab.core.problems import PROBLEM_CONTENT_TYPE, drain_body, problem_body
from shoplab.core.registry_client import Instance
from shoplab.gateway.admission import FifoGate
from shoplab.gateway.balancer import Balancer
from shoplab.server.blocking_upstream import make_pool
from shoplab.server.upstream import Broken, NotReached, UpstreamRequest, UpstreamResponse

log = logging.getLogger("shoplab.gateway.proxy")

ROUTES = {"/api/products": "product", "/api/orders": "order"}

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",  # recomputed from the bytes actually sent
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The same, as WSGI environ keys; Host is the upstream's own, the client's goes in X-Forwarded-Host.
# Expect: 100-continue was the client's question to us; we hold the whole body before forwarding it.
NOT_FORWARDED = {"HTTP_" + name.upper().replace("-", "_") for name in HOP_BY_HOP} | {
    "HTTP_EXPECT",
    "HTTP_HOST",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_HOST",
}


# Writes an upstream declares idempotent when they carry an Idempotency-Key: (service, method, path). Only
# the order service keeps keys; a POST /api/products sent twice would create two products.
KEYED_WRITES = frozenset({("order", "POST", "/api/orders")})


def may_resend(service: str, method: str, path: str, environ: dict) -> bool:
    """Whether sending the request twice does no harm: a safe method, or a write its service makes
    idempotent by its key. Any other request is retried only when it never reached an instance."""
    if method in SAFE_METHODS:
        return True
    return (service, method, path.rstrip("/")) in KEYED_WRITES and "HTTP_IDEMPOTENCY_KEY" in environ


def route(path: str) -> str | None:
    for prefix, service in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return None


@dataclass
class Outcome:
    """What the client gets for one proxied request."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes
    upstream: str | None = None  # the instance that answered
    attempts: int = 0


@dataclass
class Plan:
    """A proxied request ready to go: its service, the upstream request, and the instances to try."""

    service: str
    path: str
    outgoing: UpstreamRequest
    candidates: list[Instance]


class Proxy:
    def __init__(self, app: Callable, config: Config, balancer: Balancer):
        self.app = app
        self.config = config
        self.balancer = balancer
        self.pool = make_pool(config.gateway_connect_timeout)  # urllib3 unless GATEWAY_UPSTREAM_POOL says
        self.gates = {
            service: FifoGate(limit) for service, limit in config.gateway_max_inflight.items() if limit > 0
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        service = route(environ.get("PATH_INFO", ""))
        if service is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        slot: list = []  # the gate's slot, when one was taken: held until the answer has been sent
        outcome = self._proxy(service, environ, slot)
        answer = Answer(outcome.body, slot[0] if slot else None)
        try:
            start_response(outcome.status, outcome.headers)
        except BaseException:
            answer.close()
            raise
        self.log(environ, outcome, started)
        return answer

    @staticmethod
    def log(environ: dict, outcome: Outcome, started: float) -> None:
        path = environ.get("PATH_INFO", "")
        status = int(outcome.status[:3])
        log_request(
            environ["REQUEST_METHOD"],
            path,
            status,
            started,
            upstream=outcome.upstream,
            attempts=outcome.attempts,
        )

    def problem(self, status: int, detail: str, path: str, retry_after: bool = False) -> Outcome:
        body = problem_body(status, detail, instance=path)
        headers = [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(body)))]
        if retry_after:
            headers.append(("Retry-After", "1"))
        return Outcome(f"{status} {HTTPStatus(status).phrase}", headers, body)

    def plan(self, service: str, environ: dict, candidates: list[Instance] | None = None) -> Plan | Outcome:
        """The request ready to forward, or the problem that answers it at once (413, 503).

        `candidates`: instances the caller looked up already (the event loop looks up off its thread)."""
        path = environ.get("PATH_INFO", "")
        body = self._read_body(environ)
        if body is None:
            limit = self.config.max_content_length
            return self.problem(413, f"The body is larger than {limit} bytes.", path)
        method = environ["REQUEST_METHOD"]
        outgoing = UpstreamRequest(
            method,
            self._target(environ),
            self._forward_headers(environ, body),
            body,
            may_resend=may_resend(service, method, path, environ),
            max_response=self.config.gateway_max_response_bytes,
        )
        if candidates is None:
            candidates = self.balancer.candidates(service)
        if not candidates:
            detail = f"No healthy instance of the {service} service is registered."
            return self.problem(503, detail, path, retry_after=True)
        return Plan(service, path, outgoing, candidates)

    def saturated(self, plan: Plan) -> Outcome:
        detail = f"The {plan.service} service is saturated: no slot freed within the queue timeout."
        return self.problem(503, detail, plan.path, retry_after=True)

    def _proxy(self, service: str, environ: dict, slot: list) -> Outcome:
        plan = self.plan(service, environ)
        if isinstance(plan, Outcome):
            return plan
        gate = self.gates.get(service)
        if gate is None:
            return self._forward(plan)
        if not gate.enter(self.config.gateway_queue_timeout):
            return self.saturated(plan)
        try:
            outcome = self._forward(plan)
        except BaseException:
            gate.leave()
            raise
        slot.append(gate.leave)
        return outcome

    def _forward(self, plan: Plan) -> Outcome:
        attempts = Attempts(self, plan)
        while (step := attempts.next()) is not None:
            instance, timeout = step
            try:
                response = self.pool.request(instance.address, instance.port, plan.outgoing, timeout)
            except (NotReached, Broken) as error:
                attempts.failed(instance, error)
                continue
            return attempts.answered(instance, response)
        return attempts.gave_up()

    def _read_body(self, environ: dict) -> bytes | None:
        """The request body, or None when it is over the limit (checked before reading it all)."""
        limit = self.config.max_content_length
        length = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        if length:
            try:
                size = int(length)
            except ValueError:
                size = limit + 1
            if size > limit:
                drain_body(environ)
                return None
            return stream.read(size) if size else b""
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            data = stream.read(limit + 1)
            return None if len(data) > limit else data
        return b""

    @staticmethod
    def _target(environ: dict) -> str:
        raw = environ.get("RAW_URI", "")
        if raw.startswith("/"):
            return raw  # exactly what the client sent, encoding included
        query = environ.get("QUERY_STRING", "")
        path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/%:@!$&'()*+,;=-._~")
        return f"{path}?{query}" if query else path

    @staticmethod
    def _forward_headers(environ: dict, body: bytes) -> list[tuple[str, str]]:
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_") and key not in NOT_FORWARDED:
                headers.append((key[5:].replace("_", "-").title(), value))
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        if body or environ["REQUEST_METHOD"] in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        client = environ.get("REMOTE_ADDR", "")
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        headers.append(("X-Forwarded-For", f"{forwarded_for}, {client}" if forwarded_for else client))
        if "HTTP_HOST" in environ:
            headers.append(("X-Forwarded-Host", environ["HTTP_HOST"]))
        return headers


class Attempts:
    """The retry policy of one proxied request, without I/O (threads and the event loop drive it alike):
    the first choice and one retry on another instance, within GATEWAY_TOTAL_TIMEOUT; a request that may
    have reached an instance is retried only when sending it twice does no harm."""

    def __init__(self, proxy: Proxy, plan: Plan):
        self.proxy = proxy
        self.plan = plan
        self.deadline = time.monotonic() + proxy.config.gateway_total_timeout
        self.left = plan.candidates[:2]
        self.count = 0
        self.failure: Exception | None = None

    def next(self) -> tuple[Instance, float] | None:
        """The instance to try now and the time it gets, or None: give up."""
        remaining = self.deadline - time.monotonic()
        if not self.left or remaining <= 0:
            return None
        self.count += 1
        return self.left.pop(0), min(self.proxy.config.gateway_attempt_timeout, remaining)

    def failed(self, instance: Instance, error: NotReached | Broken) -> None:
        self.failure = error
        self.proxy.balancer.failed(instance)
        if isinstance(error, NotReached):
            log.warning("upstream %s not reached: %s", instance.instance_id, error)
            return
        log.warning("upstream %s failed mid-request: %s", instance.instance_id, error)
        if not self.plan.outgoing.may_resend:
            self.left = []

    def answered(self, instance: Instance, response: UpstreamResponse) -> Outcome:
        self.proxy.balancer.succeeded(instance)
        out_headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
        if self.plan.outgoing.method != "HEAD":
            out_headers.append(("Content-Length", str(len(response.body))))
        else:  # a HEAD answer keeps the upstream's length: its body is never sent
            out_headers += [(k, v) for k, v in response.headers if k.lower() == "content-length"]
        out_headers.append(("X-Upstream-Instance", instance.instance_id))
        status = f"{response.status} {response.reason}"
        return Outcome(status, out_headers, response.body, instance.instance_id, self.count)

    def gave_up(self) -> Outcome:
        service, path, failure = self.plan.service, self.plan.path, self.failure
        if isinstance(failure, Broken) and failure.timed_out:
            outcome = self.proxy.problem(504, f"The {service} service did not answer in time.", path)
        elif isinstance(failure, Broken):
            detail = f"The {service} service failed while answering; the request may have been processed."
            outcome = self.proxy.problem(502, detail, path)
        else:
            detail = f"No instance of the {service} service could be reached."
            outcome = self.proxy.problem(503, detail, path, retry_after=True)
        outcome.attempts = self.count
        return outcome


class Answer(list):
    """The one-part WSGI body of a proxied answer. The server calls close() once it has sent it (PEP 3333),
    and that gives the gate's slot back: a slot then covers writing the answer too, so at most
    GATEWAY_MAX_INFLIGHT_<SERVICE> threads of a worker compete for the GIL and the rest wait in FIFO order
    (p99 on loopback 55-70 -> 33-41 ms with a gate of 4)."""

    def __init__(self, body: bytes, release: Callable[[], None] | None):
        super().__init__((body,))
        self._release = release

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
