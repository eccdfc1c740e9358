"""The product service's event-loop worker (shoplab.server.product_worker) on real sockets: cache hits on the
loop, everything else on its thread pool, one connection carrying both in order."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
import requests
from helpers import OPERATOR, body_of, connect, read_framed_answers, read_response, status_of


@pytest.fixture(scope="module")
def product(stack) -> str:
    return f"http://127.0.0.1:{stack.products[0].port}"


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def request(method: str, path: str, body: dict | None = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: lab\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    if method not in ("GET", "HEAD"):
        head += f"Authorization: {OPERATOR['Authorization']}\r\n"
    return head.encode() + b"\r\n" + payload


def test_a_hit_answers_the_same_bytes_flask_stored(product, new_product):
    item = new_product(stock=9)
    with connect(product) as sock:
        sock.sendall(request("GET", f"/api/products/{item['id']}") * 2)
        (miss_head, miss_body), (hit_head, hit_body) = read_framed_answers(sock, 2)
    assert header(miss_head, b"X-Cache") == b"MISS"  # Flask, on the pool: it read PostgreSQL and stored it
    assert header(hit_head, b"X-Cache") == b"HIT"  # the loop: Redis's bytes as they are
    assert hit_body == miss_body
    assert json.loads(hit_body)["stock"] == 9
    assert header(hit_head, b"Content-Type") == header(miss_head, b"Content-Type") == b"application/json"


def test_pipelined_reads_and_writes_on_one_connection_are_answered_in_order(product, new_product):
    item = new_product(stock=30)
    path = f"/api/products/{item['id']}"
    sock_requests = [
        request("GET", path),  # miss (pool), then cached
        request("GET", path),  # hit (loop)
        request("PATCH", path, {"stock": 12}),  # a write (pool): invalidates
        request("GET", path),  # miss again: must see 12, never the cached 30
        request("GET", "/health"),  # Flask's own route
        request("GET", "/api/products?per_page=3"),
        request("GET", "/api/products/0"),  # not a cache read: the route's 404
    ]
    with connect(product) as sock:
        sock.sendall(b"".join(sock_requests))
        answers = read_framed_answers(sock, len(sock_requests))
    statuses = [int(head.split(b" ")[1]) for head, _ in answers]
    assert statuses == [200, 200, 200, 200, 200, 200, 404]
    assert [header(h, b"X-Cache") for h, _ in answers[:4]] == [b"MISS", b"HIT", None, b"MISS"]
    assert [json.loads(b)["stock"] for _, b in answers[:4]] == [30, 30, 12, 12]
    assert json.loads(answers[4][1])["status"] == "ok"
    assert len(json.loads(answers[5][1])["items"]) == 3
    assert header(answers[6][0], b"Content-Type") == b"application/problem+json"


def test_http_1_0_gets_a_1_0_answer_and_the_connection_closes(product):
    with connect(product) as sock:
        sock.sendall(b"GET /api/products/1 HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200 ")
    assert body_of(answer)["id"] == 1


def test_a_chunked_request_is_handed_to_a_thread_and_answered(product):
    body = json.dumps({"stock": 5}).encode()
    with connect(product) as sock:
        sock.sendall(
            b"PATCH /api/products/999999 HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            b"Authorization: %s\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%X\r\n%s\r\n0\r\n\r\n"
            % (OPERATOR["Authorization"].encode(), len(body), body)
        )
        assert status_of(read_response(sock)) == 404  # gunicorn's parser read it; Flask answered
        sock.sendall(request("GET", "/api/products/1"))
        assert body_of(read_response(sock))["id"] == 1  # and the thread serves the connection on


def test_many_concurrent_misses_share_the_bounded_pool_and_all_get_answers(stack, servers, new_product):
    # THREADS=2: twenty connections each asking for a product nobody read yet queue for two threads.
    env = stack.service_env(SERVICE_REGISTRY="", THREADS="2")
    instance = servers.start_service("product", "product-pool", env)
    base = f"http://127.0.0.1:{instance.port}"
    items = [new_product(stock=n + 1) for n in range(20)]
    results: list[int] = []

    def read(item: dict) -> None:
        answer = requests.get(f"{base}/api/products/{item['id']}", timeout=20)
        results.append(answer.json()["stock"] if answer.status_code == 200 else -answer.status_code)

    threads = [threading.Thread(target=read, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 21))


def test_sigterm_answers_a_request_running_on_the_pool(stack, servers):
    instance = servers.start_service("product", "product-term", stack.service_env(SERVICE_REGISTRY=""))
    with connect(f"http://127.0.0.1:{instance.port}") as sock:
        # A miss of a list page no one asked for: served by Flask on the pool while the worker stops.
        sock.sendall(request("GET", "/api/products?per_page=7&page=3"))
        instance.popen.send_signal(signal.SIGTERM)
        answer = read_response(sock)
    assert status_of(answer) == 200
    assert len(body_of(answer)["items"]) == 7
    assert instance.popen.wait(timeout=20) == 0


def worker_threads(master_pid: int) -> int:
    """Threads of the gunicorn worker under `master_pid` (the test instances run one worker)."""
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as children:
        (worker,) = children.read().split()
    return len(os.listdir(f"/proc/{worker}/task"))


def test_connections_stay_on_the_loop_whatever_they_ask(stack, servers):
    # THREADS=4: forty keep-alive connections, each with a hit, a miss and a write, need no thread of
    # their own (the thread worker would hold forty).
    env = stack.service_env(SERVICE_REGISTRY="", THREADS="4")
    instance = servers.start_service("product", "product-threads", env)
    base = f"http://127.0.0.1:{instance.port}"
    sockets = [connect(base) for _ in range(40)]
    try:
        for n, sock in enumerate(sockets):
            sock.sendall(request("GET", f"/api/products?per_page={n + 1}") * 2 + request("GET", "/health"))
            assert [int(head.split(b" ")[1]) for head, _ in read_framed_answers(sock, 3)] == [200, 200, 200]
        assert worker_threads(instance.popen.pid) < 12  # the loop, the pool's 4, heartbeat and log flusher
    finally:
        for sock in sockets:
            sock.close()
