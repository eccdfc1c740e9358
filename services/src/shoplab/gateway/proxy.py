"""The proxy path: a plain WSGI callable in front of the gateway's Flask app.

`/api/products…` and `/api/orders…` never enter Flask's routing: this is the hot path of the benchmark,
so it does the least work that is correct. Bodies pass through as bytes and are never parsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from urllib.parse import quote

from shoplab.core.config import Config
from shoplab.core.logs import log_request
from shoplab.core.problems import PROBLEM_CONTENT_TYPE, drain_body, problem_body
from shoplab.gateway.admission import FifoGate
from shoplab.gateway.balancer import Balancer
from shoplab.gateway.upstream import Broken, ConnectionPool, NotReached, UpstreamRequest

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


def route(path: str) -> str | None:
    for prefix, service in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return None


class Proxy:
    def __init__(self, app: Callable, config: Config, balancer: Balancer):
        self.app = app
        self.config = config
        self.balancer = balancer
        self.pool = ConnectionPool(config.gateway_connect_timeout)
        limit = config.gateway_max_inflight
        self.gates = {service: FifoGate(limit) for service in ROUTES.values()} if limit > 0 else {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        service = route(environ.get("PATH_INFO", ""))
        if service is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        slot: list = []  # the gate's slot, when one was taken: held until the answer has been sent
        status, headers, body, upstream, attempts = self._proxy(service, environ, slot)
        answer = Answer(body, slot[0] if slot else None)
        try:
            start_response(status, headers)
        except BaseException:
            answer.close()
            raise
        log_request(method, path, int(status[:3]), started, upstream=upstream, attempts=attempts)
        return answer

    def _problem(self, status: int, detail: str, path: str, extra_headers=()) -> tuple:
        body = problem_body(status, detail, instance=path)
        headers = [("Content-Type", PROBLEM_CONTENT_TYPE), ("Content-Length", str(len(body))), *extra_headers]
        return f"{status} {HTTPStatus(status).phrase}", headers, body

    def _proxy(self, service: str, environ: dict, slot: list) -> tuple[str, list, bytes, str | None, int]:
        path = environ.get("PATH_INFO", "")
        body = self._read_body(environ)
        if body is None:
            limit = self.config.max_content_length
            return (*self._problem(413, f"The body is larger than {limit} bytes.", path), None, 0)

        method = environ["REQUEST_METHOD"]
        outgoing = UpstreamRequest(
            method,
            self._target(environ),
            self._forward_headers(environ, body),
            body,
            # A GET, or a POST the client made idempotent, may be sent twice without harm.
            may_resend=method in SAFE_METHODS or "HTTP_IDEMPOTENCY_KEY" in environ,
        )

        candidates = self.balancer.candidates(service)
        if not candidates:
            detail = f"No healthy instance of the {service} service is registered."
            return (*self._problem(503, detail, path, [("Retry-After", "1")]), None, 0)

        gate = self.gates.get(service)
        if gate is None:
            return self._forward(service, path, method, outgoing, candidates)
        if not gate.enter(self.config.gateway_queue_timeout):
            detail = f"The {service} service is saturated: no slot freed within the queue timeout."
            return (*self._problem(503, detail, path, [("Retry-After", "1")]), None, 0)
        try:
            answer = self._forward(service, path, method, outgoing, candidates)
        except BaseException:
            gate.leave()
            raise
        slot.append(gate.leave)
        return answer

    def _forward(
        self, service: str, path: str, method: str, outgoing: UpstreamRequest, candidates: list
    ) -> tuple:
        deadline = time.monotonic() + self.config.gateway_total_timeout
        failure = None
        attempts = 0
        for instance in candidates[:2]:  # the first choice, and one retry elsewhere
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            attempts += 1
            try:
                timeout = min(self.config.gateway_attempt_timeout, remaining)
                response = self.pool.request(instance.address, instance.port, outgoing, timeout)
            except NotReached as error:
                failure = error
                self.balancer.failed(instance)
                log.warning("upstream %s not reached: %s", instance.instance_id, error)
                continue
            except Broken as error:
                failure = error
                self.balancer.failed(instance)
                log.warning("upstream %s failed mid-request: %s", instance.instance_id, error)
                if outgoing.may_resend:
                    continue
                break
            self.balancer.succeeded(instance)
            out_headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
            if method != "HEAD":  # a HEAD answer keeps the upstream's length: its body is never sent
                out_headers.append(("Content-Length", str(len(response.body))))
            else:
                out_headers += [(k, v) for k, v in response.headers if k.lower() == "content-length"]
            out_headers.append(("X-Upstream-Instance", instance.instance_id))
            status = f"{response.status} {response.reason}"
            return status, out_headers, response.body, instance.instance_id, attempts

        if isinstance(failure, Broken) and failure.timed_out:
            detail = f"The {service} service did not answer in time."
            return (*self._problem(504, detail, path), None, attempts)
        if isinstance(failure, Broken):
            detail = f"The {service} service failed while answering; the request may have been processed."
            return (*self._problem(502, detail, path), None, attempts)
        detail = f"No instance of the {service} service could be reached."
        return (*self._problem(503, detail, path, [("Retry-After", "1")]), None, attempts)

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


class Answer(list):
    """The one-part WSGI body of a proxied answer. The server calls close() once it has sent it (PEP 3333),
    and that gives the gate's slot back: a slot then covers writing the answer too, so at most
    GATEWAY_MAX_INFLIGHT threads of a worker compete for the GIL and the rest wait in FIFO order
    (p99 on loopback 55-70 -> 33-41 ms with a gate of 4)."""

    def __init__(self, body: bytes, release: Callable[[], None] | None):
        super().__init__((body,))
        self._release = release

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
