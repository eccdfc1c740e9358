"""The gateway's blocking upstream pool (the thread path: what the event loop hands over) never sends on a
connection the instance has already closed: a request that may not be resent (a POST) would otherwise
fail with a 502."""

from __future__ import annotations

import json
import time

from helpers import OPERATOR
from shoplab.devtools.servers import LOOPBACK
from shoplab.server.blocking_upstream import make_pool
from shoplab.server.upstream import UpstreamRequest


def test_a_pooled_connection_the_instance_closed_is_not_reused_for_a_post(stack, servers):
    instance = servers.start_service("product", "product-short-keepalive", stack.service_env(KEEPALIVE="1"))
    pool = make_pool(connect_timeout=3)
    health = UpstreamRequest("GET", "/health", [], b"", may_resend=True)
    assert pool.request(LOOPBACK, instance.port, health, timeout=5).status == 200
    time.sleep(2.5)  # the instance closes the idle pooled connection after KEEPALIVE
    body = json.dumps({"name": "Pool check", "price_cents": 100, "stock": 1}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Authorization", OPERATOR["Authorization"]),
    ]
    create = UpstreamRequest("POST", "/api/products", headers, body, may_resend=False)
    assert pool.request(LOOPBACK, instance.port, create, timeout=5).status == 201
