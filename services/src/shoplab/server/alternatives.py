"""The kept library the gateway's blocking upstream pool is also measured against (`make bench`'s floor
variants, bench/README.md): geventhttpclient, under gunicorn's gevent worker only, with the same
`request(host, port, outgoing, timeout)` as `blocking_upstream.Urllib3Pool`. Chosen with
GATEWAY_UPSTREAM_POOL=geventhttpclient; imported only when chosen."""

from __future__ import annotations

from http import HTTPStatus

from shoplab.server.upstream import Broken, NotReached, UpstreamRequest, UpstreamResponse


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
