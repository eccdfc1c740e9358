"""The asyncio alternative to the gateway's hand-written event loop, for the benchmark's comparison only
(README.md in this folder): uvicorn under gunicorn's arbiter (uvloop and httptools, or asyncio and h11)
serving the gateway as an ASGI app, with aiohttp's keep-alive pool to the instances.

The product service the same way: a cache hit is one read with redis-py's asyncio client (hiredis parses
the reply), everything else runs the Flask app on a thread.

The proxy's decisions are the same objects the hand-written loop uses (`Proxy.plan`, `Attempts`, the
balancer, one FIFO gate per service, here an asyncio.Semaphore, which wakes its waiters in order); what
is not `/api/…` runs the gateway's Flask app on a thread. Chosen with
WORKER_CLASS=shoplab.server.asgi_alternative.UvloopHttptoolsWorker (or H11Worker) for the gateway or the
product service.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import ClassVar

from uvicorn_worker import UvicornWorker

from shoplab.core.logs import log_request
from shoplab.gateway.proxy import Attempts, Outcome, Proxy, route
from shoplab.product.fastpath import hit_headers, read_command
from shoplab.server.upstream import Broken, NotReached, UpstreamRequest, UpstreamResponse


class UvloopHttptoolsWorker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict] = {
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "server_header": False,  # as our workers: the instance's Server and Date headers are relayed
        "date_header": False,
    }


class H11Worker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict] = {
        "loop": "asyncio",
        "http": "h11",
        "access_log": False,
        "server_header": False,
        "date_header": False,
    }


def asgi_app(service: str, flask_app):
    return AsgiGateway(flask_app) if service == "gateway" else AsgiProduct(flask_app)


async def _lifespan(receive, send, on_shutdown) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


class AsgiProduct:
    def __init__(self, flask_app):
        self.flask = flask_app
        self.cache = flask_app.extensions.get("shoplab.cache")
        self.redis = None

    async def _close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._close)
            return
        body = await _body(receive)
        command = None
        cache = self.cache
        if scope["method"] == "GET" and cache is not None and cache.available():
            command = read_command(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        if command is not None:
            started = time.perf_counter()
            hit = await self._read(command)
            if isinstance(hit, bytes):
                await _send(send, 200, hit_headers(hit), hit)
                log_request("GET", scope["path"], 200, started, cache="HIT")
                return
        status, headers, payload = await asyncio.to_thread(_run_wsgi, self.flask, _environ(scope, body))
        await _send(send, int(status[:3]), headers, payload)

    async def _read(self, command: tuple):
        import redis
        import redis.asyncio

        if self.redis is None:
            kwargs = self.cache.client.connection_pool.connection_kwargs
            self.redis = redis.asyncio.Redis(
                host=kwargs.get("host", "localhost"),
                port=kwargs.get("port", 6379),
                db=kwargs.get("db", 0),
                password=kwargs.get("password"),
                socket_timeout=kwargs.get("socket_timeout"),
                socket_connect_timeout=kwargs.get("socket_connect_timeout"),
            )
        try:
            return await self.redis.execute_command(*command)
        except (redis.RedisError, OSError) as error:
            self.cache.failed(command[0].lower(), error)
            return None


class AsgiGateway:
    def __init__(self, flask_app):
        self.flask = flask_app
        self.proxy: Proxy = flask_app.wsgi_app
        self.session = None
        self.gates: dict[str, asyncio.Semaphore] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._close)
            return
        body = await _body(receive)
        environ = _environ(scope, body)
        service = route(scope["path"])
        if service is None:
            status, headers, payload = await asyncio.to_thread(_run_wsgi, self.flask, environ)
            await _send(send, int(status[:3]), headers, payload)
            return
        started = time.perf_counter()
        outcome = await self._proxy(service, environ)
        await _send(send, int(outcome.status[:3]), outcome.headers, outcome.body)
        self.proxy.log(environ, outcome, started)

    async def _close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _proxy(self, service: str, environ: dict) -> Outcome:
        plan = self.proxy.plan(service, environ)
        if isinstance(plan, Outcome):
            return plan
        limit = self.proxy.config.gateway_max_inflight.get(service, 0)
        if limit <= 0:
            return await self._forward(plan)
        gate = self.gates.get(service) or self.gates.setdefault(service, asyncio.Semaphore(limit))
        try:
            await asyncio.wait_for(gate.acquire(), self.proxy.config.gateway_queue_timeout)
        except TimeoutError:
            return self.proxy.saturated(plan)
        try:
            return await self._forward(plan)
        finally:
            gate.release()

    async def _forward(self, plan) -> Outcome:
        attempts = Attempts(self.proxy, plan)
        while (step := attempts.next()) is not None:
            instance, timeout = step
            try:
                response = await self._request(instance.address, instance.port, plan.outgoing, timeout)
            except (NotReached, Broken) as error:
                attempts.failed(instance, error)
                continue
            return attempts.answered(instance, response)
        return attempts.gave_up()

    async def _request(
        self, host: str, port: int, outgoing: UpstreamRequest, timeout: float
    ) -> UpstreamResponse:
        import aiohttp

        if self.session is None:
            connector = aiohttp.TCPConnector(limit_per_host=64, keepalive_timeout=30)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        url = f"http://{host}:{port}{outgoing.target}"
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=self.proxy.config.gateway_connect_timeout
        )
        try:
            async with self.session.request(
                outgoing.method,
                url,
                data=outgoing.body or None,
                headers=outgoing.headers,
                timeout=client_timeout,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            ) as response:
                body = await response.content.read(outgoing.max_response + 1)
                if len(body) > outgoing.max_response:
                    raise Broken(f"{host}:{port}: response larger than {outgoing.max_response} bytes")
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
                return UpstreamResponse(response.status, response.reason or "", headers, body)
        except aiohttp.ClientConnectorError as error:
            raise NotReached(f"{host}:{port}: {error}") from error
        except TimeoutError as error:
            raise Broken(f"{host}:{port}: timed out", timed_out=True) from error
        except aiohttp.ClientError as error:
            raise Broken(f"{host}:{port}: {error}") from error


def _environ(scope: dict, body: bytes) -> dict:
    query = scope.get("query_string", b"").decode("latin-1")
    raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query,
        "RAW_URI": f"{raw_path}?{query}" if query else raw_path,
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "SERVER_NAME": (scope.get("server") or ("127.0.0.1", 0))[0],
        "SERVER_PORT": str((scope.get("server") or ("", 80))[1]),
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope["headers"]:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
        elif key == "CONTENT_LENGTH":
            environ["CONTENT_LENGTH"] = text
        else:
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def _run_wsgi(app, environ: dict) -> tuple[str, list, bytes]:
    answer: list = []

    def start_response(status, headers, exc_info=None):
        answer[:] = [status, headers]

    result = app(environ, start_response)
    try:
        payload = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return answer[0], answer[1], payload


async def _send(send, status: int, headers: list, body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
