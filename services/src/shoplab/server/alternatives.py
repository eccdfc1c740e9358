"""The kept libraries the hand-written upstream pool is measured against (`make bench`'s floor variants,
bench/README.md): the same `request(host, port, outgoing, timeout)` as `upstream.ConnectionPool`, so the
gateway's `Proxy` runs on either. Chosen with GATEWAY_UPSTREAM_POOL (`own`, the default; `urllib3`;
`geventhttpclient`, under gunicorn's gevent worker only). Imported only when chosen."""

from __future__ import annotations

import os
import threading
from http import HTTPStatus

from shoplab.server.upstream import Broken, ConnectionPool, NotReached, UpstreamRequest, UpstreamResponse

POOLS = ("own", "urllib3", "geventhttpclient")


def make_pool(connect_timeout: float):
    kind = os.environ.get("GATEWAY_UPSTREAM_POOL", "own")
    if kind == "urllib3":
        return Urllib3Pool(connect_timeout)
    if kind == "geventhttpclient":
        return GeventHttpClientPool(connect_timeout)
    if kind != "own":
        raise ValueError(f"GATEWAY_UPSTREAM_POOL must be one of {', '.join(POOLS)}, got {kind!r}")
    return ConnectionPool(connect_timeout)


class Urllib3Pool:
    """urllib3's HTTPConnectionPool per instance (keep-alive, 64 idle connections each, as ours)."""

    def __init__(self, connect_timeout: float):
        import urllib3

        self.urllib3 = urllib3
        self.connect_timeout = connect_timeout
        self._pools: dict[tuple[str, int], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, host: str, port: int):
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(
                    key, self.urllib3.HTTPConnectionPool(host, port, maxsize=64, block=False, retries=False)
                )
        return pool

    def request(self, host: str, port: int, outgoing: UpstreamRequest, timeout: float) -> UpstreamResponse:
        u = self.urllib3
        try:
            response = self._pool(host, port).urlopen(
                outgoing.method,
                outgoing.target,
                body=outgoing.body or None,
                headers=dict(outgoing.headers),
                # A pooled connection the instance closed: resent on a fresh one only when harmless.
                retries=u.Retry(
                    total=1 if outgoing.may_resend else 0,
                    connect=0,
                    read=0,
                    redirect=False,
                    status=0,
                    raise_on_status=False,
                ),
                redirect=False,
                timeout=u.Timeout(connect=self.connect_timeout, read=timeout),
                preload_content=False,
                assert_same_host=False,
            )
        except (u.exceptions.NewConnectionError, u.exceptions.ConnectTimeoutError) as error:
            raise NotReached(f"{host}:{port}: {error}") from error
        except u.exceptions.MaxRetryError as error:
            reason = error.reason
            if isinstance(reason, (u.exceptions.NewConnectionError, u.exceptions.ConnectTimeoutError)):
                raise NotReached(f"{host}:{port}: {reason}") from error
            raise Broken(
                f"{host}:{port}: {reason}", isinstance(reason, u.exceptions.ReadTimeoutError)
            ) from error
        except u.exceptions.HTTPError as error:
            raise Broken(
                f"{host}:{port}: {error}", isinstance(error, u.exceptions.ReadTimeoutError)
            ) from error
        try:
            body = response.read(outgoing.max_response + 1)
            if len(body) > outgoing.max_response:
                response.close()
                raise Broken(f"{host}:{port}: response larger than {outgoing.max_response} bytes")
            headers = list(response.headers.items())
        except u.exceptions.HTTPError as error:
            response.close()
            raise Broken(
                f"{host}:{port}: {error}", isinstance(error, u.exceptions.ReadTimeoutError)
            ) from error
        response.release_conn()
        return UpstreamResponse(response.status, response.reason or "", headers, body)


class GeventHttpClientPool:
    """geventhttpclient's HTTPClient per instance (its own parser and pool of 64 connections); gevent only."""

    def __init__(self, connect_timeout: float):
        from geventhttpclient import HTTPClient

        self.client_class = HTTPClient
        self.connect_timeout = connect_timeout
        self._clients: dict[tuple[str, int, float], HTTPClient] = {}

    def request(self, host: str, port: int, outgoing: UpstreamRequest, timeout: float) -> UpstreamResponse:
        import gevent

        key = (host, port, timeout)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self.client_class(
                host, port, concurrency=64, connection_timeout=self.connect_timeout, network_timeout=timeout
            )
        try:
            response = client.request(outgoing.method, outgoing.target, body=outgoing.body or None,
                                      headers=dict(outgoing.headers))  # fmt: skip
        except ConnectionRefusedError as error:
            raise NotReached(f"{host}:{port}: {error}") from error
        except (OSError, gevent.Timeout, ValueError) as error:
            raise Broken(
                f"{host}:{port}: {error}", isinstance(error, TimeoutError | gevent.Timeout)
            ) from error
        try:
            body = response.read(outgoing.max_response + 1)
        finally:
            response.release()
        if len(body) > outgoing.max_response:
            raise Broken(f"{host}:{port}: response larger than {outgoing.max_response} bytes")
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = "Unknown"
        return UpstreamResponse(response.status_code, reason, list(response.items()), body)
