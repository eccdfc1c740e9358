"""The app server every service runs (shoplab.server.worker under gunicorn): keep-alive, limits, shutdown,
and the buffered access lines it writes (shoplab.core.logs)."""

from __future__ import annotations

import http.client
import json
import signal
import socket
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import FAST_ENV, request_on
from shoplab.devtools.servers import LOOPBACK


def access_lines(log_text: str) -> list[dict]:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "shoplab.access"]


def test_one_connection_carries_many_requests(gateway):
    conn = http.client.HTTPConnection(gateway.removeprefix("http://"), timeout=10)
    conn.request("GET", "/health")
    conn.getresponse().read()
    first_socket = conn.sock
    for _ in range(30):
        conn.request("GET", "/api/products/1")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    assert conn.sock is first_socket  # never reconnected: every answer kept the connection open
    conn.close()


def test_a_malformed_request_is_a_400_and_the_connection_closes(gateway):
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost lab\r\n\r\n")  # a header line without a colon
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]


def test_more_connections_than_any_thread_pool_are_all_answered(stack):
    # 150 clients at once, each on its own connection: no connection waits for a pool slot.
    def fetch(_: int) -> int:
        with requests.Session() as http:
            return http.get(f"{stack.registry_url}/health", timeout=20).status_code

    with ThreadPoolExecutor(max_workers=150) as pool:
        statuses = list(pool.map(fetch, range(150)))
    assert statuses == [200] * 150


def test_worker_connections_bounds_open_connections(servers):
    registry = servers.start_service(
        "registry",
        "registry-small",
        {**FAST_ENV, "WORKER_CONNECTIONS": "2", "MAX_CONNECTIONS_PER_CLIENT": "2"},
    )
    address = (LOOPBACK, registry.port)
    first, second = (
        socket.create_connection(address, timeout=10),
        socket.create_connection(address, timeout=10),
    )
    try:
        assert request_on(first).startswith(b"HTTP/1.1 200")
        assert request_on(second).startswith(b"HTTP/1.1 200")
        with socket.create_connection(address, timeout=1.5) as third:  # accepted by the kernel's backlog
            third.sendall(b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n")
            try:
                early = third.recv(65536)
            except TimeoutError:
                early = b""
            assert early == b"", "a third connection was served past WORKER_CONNECTIONS=2"
            first.close()  # a slot frees: the waiting connection is taken and answered
            third.settimeout(10)
            assert third.recv(65536).startswith(b"HTTP/1.1 200")  # the head comes in one segment
    finally:
        first.close()
        second.close()


def test_sigterm_closes_idle_connections_and_flushes_the_access_log(servers):
    # A flush interval far longer than the test: the lines can only come from the flush at exit.
    registry = servers.start_service(
        "registry", "registry-stopping", {**FAST_ENV, "ACCESS_LOG_FLUSH_SECONDS": "600"}
    )
    with socket.create_connection((LOOPBACK, registry.port), timeout=10) as idle:
        for _ in range(3):
            assert request_on(idle, "/ready").startswith(b"HTTP/1.1 200")
        assert access_lines(registry.log_path.read_text()) == []  # still buffered
        registry.popen.send_signal(signal.SIGTERM)
        assert registry.popen.wait(timeout=15) == 0
        assert idle.recv(65536) == b""  # the idle keep-alive connection was closed, not left hanging
    lines = [line for line in access_lines(registry.log_path.read_text()) if line["path"] == "/ready"]
    assert len(lines) == 3, lines
    assert {(line["method"], line["status"]) for line in lines} == {("GET", 200)}
    assert all(line["instance"] == "registry-stopping" and line["ms"] >= 0 for line in lines)


def test_access_log_off(servers):
    registry = servers.start_service(
        "registry", "registry-quiet", {**FAST_ENV, "ACCESS_LOG": "off", "ACCESS_LOG_FLUSH_SECONDS": "0"}
    )
    assert requests.get(f"http://{LOOPBACK}:{registry.port}/health", timeout=10).status_code == 200
    registry.stop()
    assert access_lines(registry.log_path.read_text()) == []


def test_access_log_file_takes_the_lines_and_stdout_keeps_the_rest(servers, tmp_path):
    path = tmp_path / "registry.access.log"
    env = {**FAST_ENV, "ACCESS_LOG_FILE": str(path), "ACCESS_LOG_FLUSH_SECONDS": "0"}
    registry = servers.start_service("registry", "registry-file", env)
    assert requests.get(f"http://{LOOPBACK}:{registry.port}/ready", timeout=10).status_code == 200
    registry.stop()
    assert [line["path"] for line in access_lines(path.read_text()) if line["path"] == "/ready"] == ["/ready"]
    output = registry.log_path.read_text()
    assert access_lines(output) == []
    assert "Booting worker" in output  # gunicorn's own lines still go where they went
