"""The gateway: round-robin, retry on another instance, ejection, 503 when nothing is up."""

from __future__ import annotations

import select
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import FAST_ENV, OPERATOR, ScriptedInstance, answer, assert_problem, register
from shoplab.devtools.servers import wait_for


def answered_by(gateway: str, count: int, path: str = "/api/products/1") -> Counter:
    with requests.Session() as http:
        responses = [http.get(f"{gateway}{path}", timeout=10) for _ in range(count)]
    assert all(r.status_code == 200 for r in responses), [r.status_code for r in responses]
    return Counter(r.headers["X-Upstream-Instance"] for r in responses)


def test_round_robin_spreads_over_both_product_instances(gateway):
    spread = answered_by(gateway, 40)
    assert set(spread) == {"product-1", "product-2"}
    assert min(spread.values()) >= 15, spread  # strict alternation per worker: 20/20


def test_orders_are_routed_to_the_order_service(gateway):
    response = requests.get(f"{gateway}/api/orders", headers=OPERATOR, timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Upstream-Instance"] in {"order-1", "order-2"}


def test_gateway_retries_on_another_instance_when_one_dies(stack, servers):
    doomed = servers.start_service("product", "product-doomed", stack.service_env())
    stack.wait_registered("product", {"product-doomed"})
    wait_for(lambda: "product-doomed" in answered_by(stack.gateway_url, 6), 10, "gateway routing to it")

    doomed.kill()  # SIGKILL: no deregistration, the registry still lists it until the TTL runs out
    listed = requests.get(f"{stack.registry_url}/services/product/instances", timeout=5).json()
    assert "product-doomed" in {i["instance_id"] for i in listed["instances"]}
    spread = answered_by(stack.gateway_url, 30)  # every one answered 200, by a live instance
    assert set(spread) <= {"product-1", "product-2"}
    # After repeated failures the gateway stops trying the dead instance at all.
    assert "ejected product/product-doomed" in stack.gateway.log_path.read_text()
    # Writes too: one that could not be delivered to an instance goes to the next.
    with requests.Session() as http:
        for _ in range(6):
            created = http.post(
                f"{stack.gateway_url}/api/products",
                json={"name": "Retry widget", "price_cents": 1, "stock": 1},
                headers=OPERATOR,
                timeout=10,
            )
            assert created.status_code == 201


def test_no_instance_is_a_503_problem(servers):
    registry = servers.start_service("registry", "registry-empty", dict(FAST_ENV))
    gateway = servers.start_service(
        "gateway", "gateway-lonely", {**FAST_ENV, "SERVICE_REGISTRY": f"http://127.0.0.1:{registry.port}"}
    )
    url = f"http://127.0.0.1:{gateway.port}"
    body = assert_problem(requests.get(f"{url}/api/products", timeout=10), 503)
    assert "product" in body["detail"]
    assert requests.get(f"{url}/ready", timeout=10).status_code == 200
    registry.kill()
    assert_problem(requests.get(f"{url}/ready", timeout=10), 503)


def test_registered_but_unreachable_instances_are_a_503(servers):
    registry = servers.start_service("registry", "registry-ghosts", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    for n in (1, 2):  # nothing listens on port 9 of loopback
        assert register(registry_url, "product", f"ghost-{n}", 9).status_code == 201
    gateway = servers.start_service(
        "gateway", "gateway-ghosts", {**FAST_ENV, "SERVICE_REGISTRY": registry_url}
    )
    assert_problem(requests.get(f"http://127.0.0.1:{gateway.port}/api/products", timeout=10), 503)


def test_head_and_query_strings_pass_through(gateway):
    get = requests.get(f"{gateway}/api/products", params={"page": 2, "per_page": 3}, timeout=10)
    head = requests.head(f"{gateway}/api/products", params={"page": 2, "per_page": 3}, timeout=10)
    assert [p["id"] for p in get.json()["items"]] == [4, 5, 6]
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_gateway_errors_are_problems(gateway):
    assert_problem(requests.get(f"{gateway}/nowhere", timeout=10), 404)
    assert_problem(requests.get(f"{gateway}/api/productsXYZ", timeout=10), 404)
    # No redirect ever leaks an instance's internal address (werkzeug would merge the slashes).
    assert_problem(requests.get(f"{gateway}/api/products//1", allow_redirects=False, timeout=10), 404)
    oversized = b'{"items": "' + b"x" * 200_000 + b'"}'
    response = requests.post(
        f"{gateway}/api/orders", data=oversized, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_problem(response, 413)
    assert requests.get(f"{gateway}/health", timeout=10).json()["status"] == "ok"
    assert requests.get(f"{gateway}/ready", timeout=10).status_code == 200


def test_a_saturated_service_queues_in_order_then_answers_503(servers):
    registry = servers.start_service("registry", "registry-hung", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    gateway = servers.start_service(
        "gateway",
        "gateway-gated",
        {
            **FAST_ENV,
            "SERVICE_REGISTRY": registry_url,
            "GATEWAY_MAX_INFLIGHT": "1",
            "GATEWAY_QUEUE_TIMEOUT": "0.3",
            "GATEWAY_ATTEMPT_TIMEOUT": "4",
        },
    )
    url = f"http://127.0.0.1:{gateway.port}"
    # A hung instance: the kernel completes the connection (backlog) but nothing ever answers.
    with socket.create_server(("127.0.0.1", 0), backlog=8) as hung:
        assert register(registry_url, "product", "hung-1", hung.getsockname()[1]).status_code == 201
        with ThreadPoolExecutor(max_workers=1) as pool:
            holder = pool.submit(requests.get, f"{url}/api/products", timeout=20)
            wait_for(lambda: _pending(hung), 5, "the first request reaching the hung instance")
            # The one slot is taken: the next product request waits its queue timeout, then gets a 503.
            body = assert_problem(requests.get(f"{url}/api/products/1", timeout=20), 503)
            assert "saturated" in body["detail"]
            # Other routes and the gateway's own endpoints are not behind the product service's gate.
            assert requests.get(f"{url}/health", timeout=5).status_code == 200
            assert_problem(holder.result(), 504)


def _pending(listener: socket.socket) -> bool:
    """True when a connection waits in the listener's backlog (it is never accepted)."""
    return bool(select.select([listener], [], [], 0)[0])


def test_interim_answers_of_an_instance_are_skipped(servers):
    """A 1xx (103 Early Hints) before the final answer is not mistaken for it."""
    registry = servers.start_service("registry", "registry-interim", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    gateway_env = {**FAST_ENV, "SERVICE_REGISTRY": registry_url}
    gateway = servers.start_service("gateway", "gateway-interim", gateway_env)
    final = b'{"id": 7}'
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        assert register(registry_url, "product", "hinting-1", upstream.getsockname()[1]).status_code == 201
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(requests.get, f"http://127.0.0.1:{gateway.port}/api/products/7", timeout=20)
            conn, _ = upstream.accept()
            with conn:
                request = conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(final), final)
                )
                response = answer.result()
    assert request.startswith(b"GET /api/products/7 HTTP/1.1\r\n")
    assert response.status_code == 200 and response.json() == {"id": 7}
    assert response.headers["X-Upstream-Instance"] == "hinting-1"


def test_every_answer_gives_its_gate_slot_back(stack, servers):
    """With one slot per worker, held until each answer is sent: bursts, errors and clients that leave
    early never leak it (a leak would turn every later request into a 503 after the queue timeout)."""
    gateway = servers.start_service(
        "gateway",
        "gateway-one-slot",
        stack.service_env(**FAST_ENV, GATEWAY_MAX_INFLIGHT="1", GATEWAY_QUEUE_TIMEOUT="3"),
    )
    url = f"http://127.0.0.1:{gateway.port}"
    paths = ["/api/products/1", "/api/products/999999", "/api/products?per_page=3"] * 20
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda p: requests.get(url + p, timeout=20).status_code, paths))
    assert statuses == [200, 404, 200] * 20
    for _ in range(5):  # clients that send a request and leave before the answer
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            sock.sendall(b"GET /api/products HTTP/1.1\r\nHost: lab\r\n\r\n")
    assert requests.head(f"{url}/api/products/2", timeout=10).status_code == 200
    for _ in range(10):
        assert requests.get(f"{url}/api/products/2", timeout=10).status_code == 200


def test_only_what_its_service_makes_idempotent_is_sent_again_after_a_failure(servers):
    """Two instances of each service; the first request each service gets is read and dropped without a
    word. A POST /api/orders with an Idempotency-Key goes to the other instance (the order service keeps
    keys); a POST /api/products, key or not, and an order without a key are not: they may have been
    processed, and nothing would stop a second copy."""
    registry = servers.start_service("registry", "registry-retries", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    seen: dict[str, list[bytes]] = {"product": [], "order": []}
    instances = []

    def scripted(service: str, name: str) -> ScriptedInstance:
        def serve(conn: socket.socket, _n: int) -> None:
            while request := instance.receive(conn):
                seen[service].append(request)
                if len(seen[service]) == 1:
                    return  # the first one: dropped
                conn.sendall(answer(b'{"id": 1}'))

        instance = ScriptedInstance(registry_url, serve, service, name)
        instances.append(instance)
        return instance

    for service in ("product", "order"):
        scripted(service, f"{service}-a")
        scripted(service, f"{service}-b")
    gateway = servers.start_service(
        "gateway", "gateway-retries", {**FAST_ENV, "SERVICE_REGISTRY": registry_url, "WEB_CONCURRENCY": "1"}
    )
    url = f"http://127.0.0.1:{gateway.port}"
    try:
        keyed = {"Idempotency-Key": "once-only", **OPERATOR}
        product = requests.post(f"{url}/api/products", json={"name": "x"}, headers=keyed, timeout=10)
        assert_problem(product, 502)
        assert len(seen["product"]) == 1  # never sent to the second instance

        order = requests.post(f"{url}/api/orders", json={"items": []}, headers=keyed, timeout=10)
        assert order.status_code == 200, order.text  # dropped by one instance, answered by the other
        assert len(seen["order"]) == 2
        assert {r.split(b"\r\n", 1)[0] for r in seen["order"]} == {b"POST /api/orders HTTP/1.1"}

        seen["order"].clear()
        unkeyed = requests.post(f"{url}/api/orders", json={"items": []}, timeout=10)
        assert_problem(unkeyed, 502)
        assert len(seen["order"]) == 1
    finally:
        for instance in instances:
            instance.close()


def test_the_gateway_uses_only_instances_in_its_networks_and_bounds_their_answers(servers):
    registry = servers.start_service("registry", "registry-bounds", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"

    def serve(conn: socket.socket, _n: int) -> None:
        while instance.receive(conn):
            conn.sendall(answer(b'{"pad": "' + b"x" * 4096 + b'"}'))

    instance = ScriptedInstance(registry_url, serve, "product", "big-1")
    env = {**FAST_ENV, "SERVICE_REGISTRY": registry_url}
    try:
        elsewhere = servers.start_service(
            "gateway", "gateway-elsewhere", {**env, "GATEWAY_ALLOWED_NETWORKS": "10.0.0.0/8,192.168.0.0/16"}
        )
        refused = requests.get(f"http://127.0.0.1:{elsewhere.port}/api/products/1", timeout=10)
        assert "No healthy instance" in assert_problem(refused, 503)["detail"]
        assert instance.requests == []  # never even connected to
        assert "not an address in GATEWAY_ALLOWED_NETWORKS" in elsewhere.log_path.read_text()

        bounded = servers.start_service(
            "gateway", "gateway-bounded", {**env, "GATEWAY_MAX_RESPONSE_SIZE": "1k"}
        )
        too_big = requests.get(f"http://127.0.0.1:{bounded.port}/api/products/1", timeout=10)
        assert_problem(too_big, 502)
        assert len(instance.requests) >= 1
    finally:
        instance.close()
