"""The gateway's event-loop worker (shoplab.server.gateway_worker) on a real socket: what a client can do to
a connection (pipeline, trickle, half-close, switch to a non-proxied request), what an instance can do to
the gateway (close a pooled connection, send a header that may not be relayed), and a graceful stop."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import (
    FAST_ENV,
    ScriptedInstance,
    answer,
    answers_in,
    assert_problem,
    body_of,
    connect,
    read_framed_answers,
    read_response,
    request_on,
    status_of,
)
from shoplab.devtools.servers import LOOPBACK


def test_one_connection_moves_to_a_thread_for_other_requests_and_keeps_answering(gateway):
    with connect(gateway) as sock:
        assert body_of(request_on(sock, "/api/products/1"))["id"] == 1  # on the loop
        assert status_of(request_on(sock, "/health")) == 200  # Flask's route: handed to a thread
        assert body_of(request_on(sock, "/api/products/2"))["id"] == 2  # the thread proxies as well


def test_http_1_0_requests_are_proxied_too(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"GET /api/products/3 HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # HTTP/1.0 without keep-alive: the gateway closes after it
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200 ")  # gunicorn answers in the version it was asked in
    assert body_of(answer)["id"] == 3


def test_pipelined_requests_are_answered_in_order(gateway):
    ids = [5, 1, 4, 2]
    with connect(gateway) as sock:
        sock.sendall(b"".join(b"GET /api/products/%d HTTP/1.1\r\nHost: lab\r\n\r\n" % n for n in ids))
        answers = read_framed_answers(sock, len(ids))
    assert [json.loads(body)["id"] for _, body in answers] == ids


def test_a_request_that_arrives_in_pieces_is_answered(gateway, new_product):
    product = new_product(stock=5)
    body = json.dumps({"items": [{"product_id": product["id"], "quantity": 2}]}).encode()
    request = (
        b"POST /api/orders HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with connect(gateway) as sock:
        for start in range(0, len(request), 9):
            sock.sendall(request[start : start + 9])
            time.sleep(0.005)
        answer = read_response(sock)
    assert status_of(answer) == 201, answer
    assert body_of(answer)["items"][0]["quantity"] == 2
    stock = requests.get(f"{gateway}/api/products/{product['id']}", timeout=10).json()["stock"]
    assert stock == 3


def test_a_client_that_half_closes_after_its_requests_still_gets_every_answer(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"".join(b"GET /api/products/%d HTTP/1.1\r\nHost: lab\r\n\r\n" % n for n in (6, 7)))
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):  # then the gateway closes its side too
            data += chunk
    assert [body["id"] for body in answers_in(data)] == [6, 7]


def lonely_gateway(servers, name: str, **env: str) -> str:
    """A gateway whose registry lists no instance: every API request is answered 503 on the loop."""
    registry = servers.start_service("registry", f"registry-{name}", dict(FAST_ENV))
    gateway_env = {**FAST_ENV, "SERVICE_REGISTRY": f"http://{LOOPBACK}:{registry.port}", **env}
    gateway = servers.start_service("gateway", name, gateway_env)
    return f"http://{LOOPBACK}:{gateway.port}"


def test_worker_connections_bounds_the_loops_connections(servers):
    url = lonely_gateway(
        servers, "gateway-small", WORKER_CONNECTIONS="2", MAX_CONNECTIONS_PER_CLIENT="2", WEB_CONCURRENCY="1"
    )
    first, second = connect(url), connect(url)
    try:
        assert status_of(request_on(first, "/api/products")) == 503
        assert status_of(request_on(second, "/api/products")) == 503
        with connect(url) as third:  # accepted by the kernel's backlog, not by the worker
            third.settimeout(1.5)
            third.sendall(b"GET /api/products HTTP/1.1\r\nHost: lab\r\n\r\n")
            with pytest.raises(TimeoutError):
                third.recv(65536)
            first.close()  # a slot frees: the waiting connection is taken and answered
            third.settimeout(10)
            assert status_of(read_response(third)) == 503
    finally:
        first.close()
        second.close()


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_seconds(servers):
    url = lonely_gateway(servers, "gateway-brief", KEEPALIVE="1", WEB_CONCURRENCY="1")
    with connect(url) as sock:
        assert status_of(request_on(sock, "/api/products")) == 503
        sock.settimeout(5)  # closed by the loop's once-a-second sweep, 1-2 s after the answer
        assert sock.recv(65536) == b""


# --- a scripted instance ----------------------------------------------------------------------------


@pytest.fixture
def scripted(servers):
    """start(serve) → (gateway URL, the instance); the gateway's only product instance follows the script."""
    registry = servers.start_service("registry", "registry-scripted", dict(FAST_ENV))
    registry_url = f"http://{LOOPBACK}:{registry.port}"
    instances = []

    def start(serve) -> tuple[str, ScriptedInstance]:
        instance = ScriptedInstance(registry_url, serve)
        instances.append(instance)
        gateway = servers.start_service(
            "gateway",
            "gateway-scripted",
            {**FAST_ENV, "SERVICE_REGISTRY": registry_url, "WEB_CONCURRENCY": "1"},
        )
        return f"http://{LOOPBACK}:{gateway.port}", instance

    yield start
    for instance in instances:
        instance.close()


def test_a_get_finding_its_pooled_connection_closed_is_sent_again_but_a_post_never_is(scripted):
    """The instance answers one request per connection, then reads the next and closes without a word
    (as a restarting server does): the GET is sent once more on a fresh connection, the POST is not,
    because it may have been processed; the client gets a 502 problem for it."""

    def serve(conn: socket.socket, n: int) -> None:
        instance.receive(conn)
        conn.sendall(answer(b'{"id": %d}' % n))
        instance.receive(conn)  # the next request on this connection: dropped

    url, instance = scripted(serve)
    with requests.Session() as http:
        assert http.get(f"{url}/api/products/1", timeout=10).json() == {"id": 0}
        resent = http.get(f"{url}/api/products/1", timeout=10)
        assert resent.status_code == 200 and resent.json() == {"id": 1}
        assert resent.headers["X-Upstream-Instance"] == "scripted-1"
        created = http.post(
            f"{url}/api/products", json={"name": "x", "price_cents": 1, "stock": 1}, timeout=10
        )
    body = assert_problem(created, 502)
    assert "may have been processed" in body["detail"]
    methods = [r.split(b" ", 1)[0] for r in instance.requests]
    assert methods == [
        b"GET",
        b"GET",
        b"GET",
        b"POST",
    ]  # the second GET twice (dropped, answered); the POST once


def test_an_answer_with_a_header_that_may_not_be_relayed_is_a_502(scripted):
    def serve(conn: socket.socket, n: int) -> None:
        instance.receive(conn)
        conn.sendall(answer(b"{}", b"X-Broken: a\x01b"))

    url, instance = scripted(serve)
    body = assert_problem(requests.get(f"{url}/api/products/1", timeout=10), 502)
    assert "could not be relayed" in body["detail"]
    assert requests.get(f"{url}/health", timeout=10).status_code == 200  # the worker lives on


def test_sigterm_lets_a_request_in_flight_finish(scripted, servers):
    received = threading.Event()
    release = threading.Event()

    def serve(conn: socket.socket, n: int) -> None:
        instance.receive(conn)
        received.set()
        release.wait(10)
        conn.sendall(answer(b'{"id": 9}'))

    url, instance = scripted(serve)
    gateway = next(p for p in servers.processes if p.name == "gateway-scripted")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(requests.get, f"{url}/api/products/9", timeout=20)
        assert received.wait(10)
        gateway.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the worker is shutting down, the answer not yet there
        with pytest.raises(requests.ConnectionError):  # no new connections are taken meanwhile
            requests.get(f"{url}/health", timeout=2)
        release.set()
        response = pending.result()
    assert response.status_code == 200 and response.json() == {"id": 9}
    assert response.headers["Connection"] == "close"
    assert gateway.popen.wait(timeout=15) == 0
    assert '"path":"/api/products/9","status":200' in gateway.log_path.read_text()  # flushed at exit
