"""The gateway's upstream client on the thread path: urllib3, the pool a Python engineer reaches for.

The thread path serves only what the event loop hands over (chunked or oversized requests, `Expect`,
heads gunicorn's parser must judge), so it is off the hot path and the kept library serves it: one
hand-written upstream client is left, the loop's (`loop_upstream`). urllib3 checks a pooled connection
is still open before reusing it, so a POST never goes out on one the instance has closed.

GATEWAY_UPSTREAM_POOL=geventhttpclient (under gunicorn's gevent worker) is the benchmark's alternative.
"""

from __future__ import annotations

import os
import threading

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from shoplab.server.upstream import Broken, NotReached, UpstreamRequest, UpstreamResponse

POOLS = ("urllib3", "geventhttpclient")


def make_pool(connect_timeout: float):
    kind = os.environ.get("GATEWAY_UPSTREAM_POOL", "urllib3")
    if kind == "geventhttpclient":
        from shoplab.server.alternatives import GeventHttpClientPool

        return GeventHttpClientPool(connect_timeout)
    if kind != "urllib3":
        raise ValueError(f"GATEWAY_UPSTREAM_POOL must be one of {', '.join(POOLS)}, got {kind!r}")
    return Urllib3Pool(connect_timeout)


class Urllib3Pool:
    """urllib3's HTTPConnectionPool per instance (keep-alive, up to 64 idle connections each)."""

    def __init__(self, connect_timeout: float):
        self.connect_timeout = connect_timeout
        self._pools: dict[tuple[str, int], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, host: str, port: int):
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(
                    key, urllib3.HTTPConnectionPool(host, port, maxsize=64, block=False, retries=False)
                )
        return pool

    def request(self, host: str, port: int, outgoing: UpstreamRequest, timeout: float) -> UpstreamResponse:
        try:
            response = self._pool(host, port).urlopen(
                outgoing.method,
                outgoing.target,
                body=outgoing.body or None,
                headers=dict(outgoing.headers),
                # A pooled connection the instance closed: resent on a fresh one only when harmless.
                retries=urllib3.Retry(
                    total=1 if outgoing.may_resend else 0,
                    connect=0,
                    read=0,
                    redirect=False,
                    status=0,
                    raise_on_status=False,
                ),
                redirect=False,
                timeout=urllib3.Timeout(connect=self.connect_timeout, read=timeout),
                preload_content=False,
                assert_same_host=False,
            )
        except (NewConnectionError, ConnectTimeoutError) as error:
            raise NotReached(f"{host}:{port}: {error}") from error
        except urllib3.exceptions.MaxRetryError as error:
            reason = error.reason
            if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
                raise NotReached(f"{host}:{port}: {reason}") from error
            raise Broken(
                f"{host}:{port}: {reason}", isinstance(reason, urllib3.exceptions.ReadTimeoutError)
            ) from error
        except urllib3.exceptions.HTTPError as error:
            raise Broken(
                f"{host}:{port}: {error}", isinstance(error, urllib3.exceptions.ReadTimeoutError)
            ) from error
        try:
            body = response.read(outgoing.max_response + 1, decode_content=False)
            if len(body) > outgoing.max_response:
                response.close()
                raise Broken(f"{host}:{port}: response larger than {outgoing.max_response} bytes")
            headers = list(response.headers.items())
        except urllib3.exceptions.HTTPError as error:
            response.close()
            raise Broken(
                f"{host}:{port}: {error}", isinstance(error, urllib3.exceptions.ReadTimeoutError)
            ) from error
        response.release_conn()
        return UpstreamResponse(response.status, response.reason or "", headers, body)
