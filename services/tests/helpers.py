"""Helpers and settings shared by the test modules."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable

import requests

# Short intervals so expiry and re-registration are observable within seconds.
HEARTBEAT_INTERVAL = "1"
# The per-lab secrets of the session's system, and of every process a test starts beside it.
TOKENS = {name: secrets.token_urlsafe(24) for name in ("SHOPLAB_REGISTRY_TOKEN", "SHOPLAB_OPERATOR_TOKEN")}
FAST_ENV = {
    "HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
    "GATEWAY_LOOKUP_TTL": "0.3",
    "LOG_LEVEL": "INFO",
    **TOKENS,
}
# What an operator sends (catalogue writes, the order list), and what an instance sends (registry writes).
OPERATOR = {"Authorization": f"Bearer {TOKENS['SHOPLAB_OPERATOR_TOKEN']}"}
REGISTRY = {"Authorization": f"Bearer {TOKENS['SHOPLAB_REGISTRY_TOKEN']}"}


def register(registry_url: str, service: str, instance_id: str, port: int, address: str = "127.0.0.1"):
    """Register an instance as the lab's own instances do (with the registry token, from its address)."""
    body = {"instance_id": instance_id, "address": address, "port": port}
    return requests.post(
        f"{registry_url}/services/{service}/instances", json=body, headers=REGISTRY, timeout=5
    )


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


def request_on(sock: socket.socket, path: str = "/health") -> bytes:
    """Send one request, read exactly one response (head and Content-Length body) off the socket."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
    return read_response(sock)


def read_response(sock: socket.socket, data: bytes = b"") -> bytes:
    """Read exactly one response (head and Content-Length body) off the socket; `data`: bytes read already.
    What the socket delivered beyond it is lost, so use it where nothing follows unasked."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def run_until(loop, condition, timeout: float = 5.0) -> None:
    """Run the event loop `loop` until `condition()` holds (the test fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        loop.run_once(0.05)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict:
    return json.loads(response.partition(b"\r\n\r\n")[2])


def framed_answers_in(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each complete answer (Content-Length framed) at the start of `data`."""
    answers = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(rest) < length:
            break
        answers.append((head, rest[:length]))
        data = rest[length:]
    return answers


def answers_in(data: bytes) -> list[dict]:
    """The JSON bodies of the complete answers at the start of `data`."""
    return [json.loads(body) for _, body in framed_answers_in(data)]


def read_framed_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """Read until `count` complete answers arrived (the test fails if the connection closes first)."""
    data = b""
    while len(framed_answers_in(data)) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(framed_answers_in(data))} answers"
        data += chunk
    return framed_answers_in(data)


class ScriptedInstance:
    """An instance made of a socket and a script: `serve(conn, n)` handles the n-th connection."""

    def __init__(
        self,
        registry_url: str,
        serve: Callable[[socket.socket, int], None],
        service: str = "product",
        instance_id: str = "scripted-1",
    ):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.serve = serve
        self.requests: list[bytes] = []
        port = self.server.getsockname()[1]
        assert register(registry_url, service, instance_id, port).status_code == 201
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for n in range(1000):
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=self._run, args=(conn, n), daemon=True).start()

    def _run(self, conn: socket.socket, n: int) -> None:
        with conn:
            self.serve(conn, n)

    def receive(self, conn: socket.socket) -> bytes:
        """Read one request (head, and a Content-Length body) and record it; b"" when the peer closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lengths = [
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        ]
        while lengths and len(body) < int(lengths[0]):
            body += conn.recv(65536)
        self.requests.append(data)
        return data

    def close(self) -> None:
        self.server.close()


def answer(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        extra,
        len(body),
        body,
    )
