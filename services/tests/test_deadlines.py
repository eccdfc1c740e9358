"""Nothing stalls a service: clients that never read, requests that trickle in a byte at a time, and one
client opening connection after connection each meet a limit (core.deadlines), on the event loop (the
gateway) and on threads (the order service) alike; the other clients go on being served."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import FAST_ENV, OPERATOR, read_response, request_on
from shoplab.devtools.servers import LOOPBACK, wait_for

ORDER_PAGE = (
    f"GET /api/orders?per_page=100 HTTP/1.1\r\nHost: lab\r\nAuthorization: {OPERATOR['Authorization']}"
)


# Pages of some 15 kB each: more than the kernel buffers on loopback (its send queue grew past 1.6 MB).
PIPELINED = 600


def hog(port: int, pipelined: int = PIPELINED) -> socket.socket:
    """A client with a tiny receive buffer that asks for many large pages at once and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connecting: the window stays small
    sock.settimeout(10)
    sock.connect((LOOPBACK, port))
    sock.sendall(f"{ORDER_PAGE}\r\n\r\n".encode() * pipelined)
    return sock


def ended(sock: socket.socket, within: float) -> tuple[bool, int]:
    """Read until the server ends the connection (at most `within` s): (whether it did, bytes read)."""
    deadline = time.monotonic() + within
    received = 0
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += len(chunk)
    return False, received


@pytest.fixture(scope="module")
def many_orders(stack):
    """At least 100 orders, so that one page of the order list is some 15 kB."""
    with requests.Session() as operator:
        operator.headers.update(OPERATOR)
        product = operator.post(
            f"{stack.gateway_url}/api/products", json={"name": "Hog bait", "price_cents": 1, "stock": 500}
        ).json()
        line = {"items": [{"product_id": product["id"], "quantity": 1}]}
        with ThreadPoolExecutor(max_workers=8) as pool:
            placed = list(
                pool.map(lambda _: requests.post(f"{stack.gateway_url}/api/orders", json=line), range(120))
            )
        assert all(r.status_code == 201 for r in placed)
        return product


def test_clients_that_never_read_hold_no_admission_slot_and_are_cut_off(stack, servers, many_orders):
    gateway = servers.start_service(
        "gateway",
        "gateway-hogged",
        stack.service_env(
            GATEWAY_MAX_INFLIGHT_ORDER="2", GATEWAY_QUEUE_TIMEOUT="8", WRITE_TIMEOUT="3", **FAST_ENV
        ),
    )
    url = f"http://{LOOPBACK}:{gateway.port}"
    assert requests.get(f"{url}/api/orders?per_page=1", headers=OPERATOR, timeout=10).status_code == 200
    hogs = [hog(gateway.port) for _ in range(6)]  # three times the gate's slots
    try:
        time.sleep(1)  # their first pages are sent, the next ones wait for readers that never read
        started = time.monotonic()
        placed = requests.post(
            f"{url}/api/orders",
            json={"items": [{"product_id": many_orders["id"], "quantity": 1}]},
            timeout=20,
        )
        assert placed.status_code == 201, placed.text
        assert time.monotonic() - started < 3, "the order waited for a slot the hogs held"
        time.sleep(3 + 1.5)  # WRITE_TIMEOUT, and the loop's one-second check
        for sock in hogs:
            closed, received = ended(sock, within=5)
            assert closed, "a client that never read still holds its connection past WRITE_TIMEOUT"
            assert received < PIPELINED * 10_000  # cut off, not served to the end
    finally:
        for sock in hogs:
            sock.close()


def test_a_thread_writing_to_a_client_that_never_reads_gives_up_at_the_write_deadline(
    stack, servers, many_orders
):
    order = servers.start_service(
        "order", "order-hogged", stack.service_env(SERVICE_REGISTRY="", WRITE_TIMEOUT="2")
    )
    sock = hog(order.port)
    try:
        closed, _ = ended_after_idling(sock, idle=2 + 1)
        assert closed, "the order service's thread still blocks writing past WRITE_TIMEOUT"
        with socket.create_connection((LOOPBACK, order.port), timeout=10) as other:
            assert request_on(other, "/health").startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def ended_after_idling(sock: socket.socket, idle: float) -> tuple[bool, int]:
    time.sleep(idle)  # not reading meanwhile: reading would let the server go on
    return ended(sock, within=5)


def trickle(port: int, head: bytes, every: float, give_up: float) -> tuple[float | None, int]:
    """Send `head` one byte every `every` seconds: (seconds until the server closed, or None; bytes sent)."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        started = time.monotonic()
        for sent, byte in enumerate(head):
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started, sent
            sock.settimeout(every)
            try:
                if sock.recv(65536) == b"":
                    return time.monotonic() - started, sent + 1
            except TimeoutError:
                pass
            except ConnectionResetError:
                return time.monotonic() - started, sent + 1
            if time.monotonic() - started > give_up:
                return None, sent + 1
    return None, len(head)


@pytest.mark.parametrize("service", ["gateway", "order"], ids=["event-loop", "threads"])
def test_a_request_trickling_in_a_byte_at_a_time_is_cut_off_at_the_request_deadline(stack, servers, service):
    env = stack.service_env(REQUEST_TIMEOUT="2", **({"SERVICE_REGISTRY": ""} if service == "order" else {}))
    instance = servers.start_service(service, f"{service}-slowloris", env)
    head = b"GET /api/orders/1 HTTP/1.1\r\nHost: lab\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n"
    closed_after, sent = trickle(instance.port, head, every=1.0, give_up=12)
    assert closed_after is not None, "one byte a second kept the connection open"
    assert closed_after < 2 + 4  # the deadline, the loop's one-second check, scheduling
    assert sent < len(head)
    # A client that sends its request at once is served as ever.
    with socket.create_connection((LOOPBACK, instance.port), timeout=10) as sock:
        assert request_on(sock, "/health").startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("service", ["gateway", "registry"], ids=["event-loop", "threads"])
def test_one_client_holds_no_more_than_its_share_of_connections(servers, service):
    instance = servers.start_service(
        service, f"{service}-shared", {**FAST_ENV, "MAX_CONNECTIONS_PER_CLIENT": "3"}
    )
    address = (LOOPBACK, instance.port)
    held: list[socket.socket] = []

    def hold_one() -> bool:
        """One more connection, kept once it is served. The server counts a connection until it has noticed
        its close: start_service's readiness probes, from this same address, may count for a moment yet
        (longer under load, when CI's other lanes keep both cores busy)."""
        sock = socket.create_connection(address, timeout=10)
        try:
            served = request_on(sock).startswith(b"HTTP/1.1 200")
        except OSError:
            served = False
        if served:
            held.append(sock)
        else:
            sock.close()
        return served

    try:
        for count in range(1, 4):
            wait_for(hold_one, 10, f"connection {count} of the 3 one client may hold served", interval=0.2)
        with socket.create_connection(address, timeout=10) as fourth:
            closed, received = ended(fourth, within=5)
            assert (closed, received) == (True, 0), "a fourth connection from one address was served"
        # Another client address is not held back by this one.
        with socket.create_connection(address, timeout=10, source_address=("127.0.0.2", 0)) as other:
            assert request_on(other).startswith(b"HTTP/1.1 200")
        held.pop().close()

        def served_again() -> bool:  # once the server has noticed the close (soon; later under load)
            with socket.create_connection(address, timeout=10) as again:
                return request_on(again).startswith(b"HTTP/1.1 200")

        wait_for(served_again, 10, "a new connection served once one of the three closed", interval=0.2)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("service", "operator_only"),
    [("order", "GET /api/orders"), ("product", "POST /api/products")],
    ids=["threads", "loop-handover"],
)
def test_a_body_the_app_did_not_read_does_not_cut_the_idle_connection_at_the_request_deadline(
    stack, servers, service, operator_only
):
    """A 401 goes out before the rest of its (chunked) body arrives; the rest belongs to that request, so
    the connection then idles on KEEPALIVE, not on REQUEST_TIMEOUT (the gateway's pooled connections)."""
    env = stack.service_env(REQUEST_TIMEOUT="1", SERVICE_REGISTRY="")
    instance = servers.start_service(service, f"{service}-unread-body", env)
    with socket.create_connection((LOOPBACK, instance.port), timeout=10) as sock:
        sock.sendall(
            f"{operator_only} HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n".encode()
        )
        assert read_response(sock).startswith(b"HTTP/1.1 401")
        sock.sendall(b"0\r\n\r\n")  # the body's end, after the answer
        time.sleep(2.5)  # past REQUEST_TIMEOUT, well within KEEPALIVE
        assert request_on(sock, "/health").startswith(b"HTTP/1.1 200"), "the idle connection was cut"
