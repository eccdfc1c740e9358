"""The worker's plain-HTTP/1.1 fast path (shoplab.server.plainhttp): what it takes, what it hands to
gunicorn's parser, that its environ is gunicorn's, and that both paths answer on one connection."""

from __future__ import annotations

import json
import socket

import pytest
from gunicorn import http
from gunicorn.config import Config as GunicornConfig
from gunicorn.http import wsgi
from shoplab.server import plainhttp
from shoplab.server.loop_worker import encode_answer

LIMITS = plainhttp.Limits.from_gunicorn(GunicornConfig())
CLIENT, SERVER = ("10.0.0.7", 40000), ("172.20.0.10", 3000)


def head(*lines: str) -> bytes:
    return "\r\n".join(lines).encode("latin-1")


# --- parsing ------------------------------------------------------------------------------------


def test_a_plain_request_is_parsed():
    request = plainhttp.parse_head(
        head("POST /api/orders?x=1 HTTP/1.1", "Host: lab", "Accept: a", "accept: b ", "Content-Length: 12"),
        LIMITS,
    )
    assert request is not None
    assert (request.method, request.target, request.content_length, request.close) == (
        "POST",
        "/api/orders?x=1",
        12,
        False,
    )
    assert request.headers["ACCEPT"] == "a,b"  # repeated fields joined, like gunicorn's environ


def test_connection_close_is_honoured():
    request = plainhttp.parse_head(head("GET / HTTP/1.1", "Connection: Close"), LIMITS)
    assert request is not None and request.close


@pytest.mark.parametrize(("connection", "close"), [(None, True), ("Keep-Alive", False), ("close", True)])
def test_an_http_1_0_connection_is_kept_only_when_asked(connection, close):
    lines = ["GET / HTTP/1.0"] + ([f"Connection: {connection}"] if connection else [])
    request = plainhttp.parse_head(head(*lines), LIMITS)
    assert request is not None
    assert (request.version, request.close) == ("HTTP/1.0", close)


@pytest.mark.parametrize(
    "lines",
    [
        ("GET / HTTP/1.2",),  # another version
        ("GET / HTTP/2.0",),
        ("get / HTTP/1.1",),  # not a method we serve
        ("BREW / HTTP/1.1",),
        ("GET http://lab/ HTTP/1.1",),  # absolute form
        ("GET //lab/x HTTP/1.1",),
        ("GET /a#b HTTP/1.1",),
        ("GET /a b HTTP/1.1",),
        ("GET /\x01 HTTP/1.1",),
        ("POST / HTTP/1.1", "Transfer-Encoding: chunked"),
        ("POST / HTTP/1.1", "Expect: 100-continue", "Content-Length: 3"),
        ("GET / HTTP/1.1", "Connection: Upgrade", "Upgrade: h2c"),
        ("GET / HTTP/1.1", "X-Forwarded-Proto: https"),  # trusted-proxy scheme: gunicorn decides
        ("GET / HTTP/1.1", "X_Weird: 1"),  # underscores: gunicorn's header_map decides
        ("GET / HTTP/1.1", "Host lab"),  # no colon
        ("GET / HTTP/1.1", " folded: value"),  # obsolete line folding
        ("GET / HTTP/1.1", "Name: a\rb"),  # a bare CR in a value
        ("GET / HTTP/1.1", "Name: a\nb"),  # a bare LF
        ("POST / HTTP/1.1", "Content-Length: 1", "Content-Length: 1"),
        ("POST / HTTP/1.1", "Content-Length: +1"),
        ("POST / HTTP/1.1", f"Content-Length: {plainhttp.MAX_BODY + 1}"),
        ("GET / HTTP/1.1", "Host: a", "Host: b"),
        ("GET / HTTP/1.1", "X-Long: " + "v" * LIMITS.field_size),
        ("GET /" + "a" * LIMITS.request_line + " HTTP/1.1",),
        ("GET / HTTP/1.1", *[f"X-{i}: {i}" for i in range(LIMITS.fields + 1)]),
    ],
)
def test_anything_unusual_is_handed_to_gunicorn(lines):
    assert plainhttp.parse_head(head(*lines), LIMITS) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /api/products?page=2&per_page=5 HTTP/1.1\r\nHost: lab:3000\r\nAccept: a\r\nAccept: b",
        b"POST /api/orders HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 2",
        b"GET /api/products/%31%20x HTTP/1.1\r\nHost: lab\r\nX-Forwarded-For: 10.1.1.1",
        b"HEAD / HTTP/1.1",
        b"GET /api/products/1 HTTP/1.0",
        b"GET /api/products HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: lab",
    ],
)
def test_the_environ_is_the_one_gunicorn_builds(raw):
    body = b"{}" if b"Content-Length: 2" in raw else b""
    cfg = GunicornConfig()
    request = plainhttp.parse_head(raw, LIMITS)
    assert request is not None
    ours = plainhttp.build_environ(
        request, body, plainhttp.listener_environ(wsgi.base_environ(cfg), SERVER), None, CLIENT
    )
    parsed = next(iter(http.get_parser(cfg, [raw + b"\r\n\r\n" + body], CLIENT)))
    _, theirs = wsgi.create(parsed, None, CLIENT, SERVER, cfg)
    skip = {"wsgi.input", "wsgi.errors", "wsgi.early_hints", "wsgi.multithread", "gunicorn.socket"}
    assert {k: v for k, v in ours.items() if k not in skip} == {
        k: v for k, v in theirs.items() if k not in skip
    }
    assert ours["wsgi.input"].read() == parsed.body.read()


# --- answering ----------------------------------------------------------------------------------


def answer(
    method: str, status: str, headers: list, parts: list, *, close: bool = False, version: str = "HTTP/1.1"
) -> tuple[bytes, bool]:
    ours, peer = socket.socketpair()
    with ours, peer:
        response = plainhttp.PlainResponse(ours.sendall, method, close, version)
        response.start_response(status, headers)
        response.send(parts)
        ours.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := peer.recv(65536):
            data += chunk
    return data, response.keeps_alive()


def test_a_sized_answer_leaves_whole_with_keep_alive():
    headers = [("Content-Type", "text/plain"), ("Content-Length", "5")]
    data, keeps_alive = answer("GET", "200 OK", headers, [b"hello"])
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Connection: keep-alive" in lines and "Content-Length: 5" in lines
    assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines)
    assert body == b"hello" and keeps_alive


def test_an_unsized_answer_is_chunked():
    data, keeps_alive = answer("GET", "200 OK", [], [b"ab", b"", b"cde"])
    assert b"Transfer-Encoding: chunked" in data
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    assert keeps_alive


def test_head_and_204_carry_no_body():
    data, _ = answer("HEAD", "200 OK", [("Content-Length", "5")], [b"hello"])
    assert data.endswith(b"Content-Length: 5\r\n\r\n")
    data, _ = answer("DELETE", "204 No Content", [("Content-Length", "0")], [])
    assert b"Content-Length" not in data and b"chunked" not in data and data.endswith(b"\r\n\r\n")


def test_hop_by_hop_headers_of_the_application_are_dropped():
    data, _ = answer("GET", "200 OK", [("Connection", "close"), ("Server", "x"), ("Content-Length", "0")], [])
    assert data.count(b"Connection:") == 1 and b"Server: x" not in data


def test_a_short_body_closes_the_connection():
    _, keeps_alive = answer("GET", "200 OK", [("Content-Length", "10")], [b"short"])
    assert not keeps_alive


def test_connection_close_is_answered_as_such():
    data, keeps_alive = answer("GET", "200 OK", [("Content-Length", "0")], [], close=True)
    assert b"Connection: close\r\n" in data and not keeps_alive


@pytest.mark.parametrize(
    ("status", "headers"),
    [("2000 OK", []), ("200 OK", [("Bad Name", "v")]), ("200 OK", [("X-Split", "a\r\nSet-Cookie: x")])],
)
def test_invalid_status_or_headers_from_the_application_raise(status, headers):
    response = plainhttp.PlainResponse(None, "GET", False)
    with pytest.raises((ValueError, Exception)) as raised:
        response.start_response(status, headers)
    assert not response.headers_sent
    assert raised.type.__name__ in ("ValueError", "InvalidResponseHeader", "InvalidResponseHeaderName")


# --- both paths on a live server ------------------------------------------------------------------


def read_answers(sock: socket.socket, count: int) -> list[tuple[str, bytes]]:
    """`count` answers off the socket: (status line, body), Content-Length or chunked."""
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers: {data[:200]!r}"
            data += chunk
        head_part, _, data = data.partition(b"\r\n\r\n")
        lines = head_part.decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if lines[0].split()[1] in ("100", "204", "304"):
            answers.append((lines[0], b""))
            continue
        if "content-length" in fields:
            length = int(fields["content-length"])
            while len(data) < length:
                data += sock.recv(65536)
            answers.append((lines[0], data[:length]))
            data = data[length:]
        else:  # chunked
            body = b""
            while True:
                while b"\r\n" not in data:
                    data += sock.recv(65536)
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                while len(data) < size + 2:
                    data += sock.recv(65536)
                body, data = body + data[:size], data[size + 2 :]
                if size == 0:
                    break
            answers.append((lines[0], body))
    return answers


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_pipelined_requests_are_answered_in_order(gateway):
    with connect(gateway) as sock:
        sock.sendall(
            b"GET /api/products/1 HTTP/1.1\r\nHost: lab\r\n\r\n"
            b"GET /api/products/999999 HTTP/1.1\r\nHost: lab\r\n\r\n"
            b"GET /health HTTP/1.1\r\nHost: lab\r\n\r\n"
        )
        answers = read_answers(sock, 3)
    assert [status.split()[1] for status, _ in answers] == ["200", "404", "200"]
    assert json.loads(answers[0][1])["id"] == 1


def test_a_connection_moves_to_gunicorns_parser_and_keeps_serving(gateway, new_product):
    """Plain, then HTTP/1.0 keep-alive, then a chunked body with Expect: each answered on one connection."""
    product_id = new_product(stock=5)["id"]
    order_body = json.dumps({"items": [{"product_id": product_id, "quantity": 1}]}).encode()
    chunked = b"%X\r\n%s\r\n0\r\n\r\n" % (len(order_body), order_body)
    with connect(gateway) as sock:
        sock.sendall(b"GET /api/products/1 HTTP/1.1\r\nHost: lab\r\n\r\n")
        sock.sendall(b"GET /api/products/2 HTTP/1.0\r\nHost: lab\r\nConnection: keep-alive\r\n\r\n")
        first, second = read_answers(sock, 2)
        sock.sendall(
            b"POST /api/orders HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        (continue_line, _) = read_answers(sock, 1)[0]
        sock.sendall(chunked)
        (created, created_body) = read_answers(sock, 1)[0]
    assert first[0].startswith("HTTP/1.1 200") and json.loads(first[1])["id"] == 1
    assert second[0].startswith("HTTP/1.0 200") and json.loads(second[1])["id"] == 2
    assert continue_line.startswith("HTTP/1.1 100")
    assert created.startswith("HTTP/1.1 201"), created_body
    assert json.loads(created_body)["items"][0]["product_id"] == product_id


def test_an_oversized_head_gets_gunicorns_answer(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: lab\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 431 Request Header Fields Too Large")


def test_connection_close_ends_the_connection_after_the_answer(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # returns b"" only because the server closed
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in data


def test_a_body_arriving_in_pieces_is_read_whole(gateway, new_product):
    product_id = new_product(stock=5)["id"]
    body = json.dumps({"items": [{"product_id": product_id, "quantity": 1}]}).encode()
    with connect(gateway) as sock:
        sock.sendall(
            b"POST /api/orders HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 7):
            sock.sendall(body[i : i + 7])
        (status, answer_body) = read_answers(sock, 1)[0]
    assert status.startswith("HTTP/1.1 201"), answer_body
    assert json.loads(answer_body)["items"][0]["product_id"] == product_id


def test_an_http_1_0_answer_repeats_the_version_and_is_never_chunked():
    data, keeps_alive = answer("GET", "200 OK", [("Content-Length", "2")], [b"ok"], version="HTTP/1.0")
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and keeps_alive  # sized: the connection may go on
    data, keeps_alive = answer("GET", "200 OK", [], [b"ab", b"cde"], version="HTTP/1.0")
    assert b"chunked" not in data and data.endswith(b"\r\n\r\nabcde")
    assert b"Connection: close\r\n" in data and not keeps_alive  # unsized: it ends with the connection


# --- the one-pass encoding of sized answers -------------------------------------------------------

CONTENT = [("Content-Type", "application/json"), ("Content-Length", "5")]


@pytest.mark.parametrize(
    "case",
    [
        ("GET", "HTTP/1.1", "200 OK", CONTENT, b"hello", False),
        ("POST", "HTTP/1.1", "201 CREATED", [*CONTENT, ("Location", "/api/orders/7")], b"hello", False),
        ("GET", "HTTP/1.1", "200 OK", CONTENT, b"hello", True),
        ("GET", "HTTP/1.0", "200 OK", CONTENT, b"hello", False),
        ("GET", "HTTP/1.1", "404 NOT FOUND", [("Content-Length", "10")], b"short", False),  # short: close
        ("GET", "HTTP/1.1", "200 OK", [("Content-Length", "2")], b"longer", False),  # cut to its length
        ("GET", "HTTP/1.1", "200 OK", [("Content-Length", "0")], b"", False),
        # Hop-by-hop fields of the application are dropped; the connection's own are ours.
        (
            "GET",
            "HTTP/1.1",
            "200 OK",
            [("Connection", "close"), ("Server", "x"), ("Date", "y"), *CONTENT],
            b"hello",
            False,
        ),
        (
            "GET",
            "HTTP/1.1",
            "200 OK",
            [("Keep-Alive", "timeout=5"), ("Upgrade", "h2c"), *CONTENT],
            b"hello",
            False,
        ),
        ("GET", "HTTP/1.1", "200 OK", [("X-Padded", " \tv \t"), ("Content-Length", " 5 ")], b"hello", False),
        ("GET", "HTTP/1.1", "200", [("X-Latin", "caf\xe9"), ("X-Empty", ""), *CONTENT], b"hello", False),
        ("GET", "HTTP/1.1", "200 OK", [("Content-Length", "3"), ("content-length", "5")], b"hello", False),
    ],
)
def test_a_sized_answer_in_one_pass_is_byte_for_byte_plainresponses(monkeypatch, case):
    method, version, status, headers, body, close = case
    monkeypatch.setattr(plainhttp, "http_date", lambda: "Mon, 30 Nov 2026 17:00:00 GMT")
    parts: list[bytes] = []
    response = plainhttp.PlainResponse(parts.append, method, close, version)
    response.start_response(status, headers)
    response.send((body,))
    one_pass = plainhttp.encode_sized(method, version, status, headers, body, close=close)
    assert one_pass == (b"".join(parts), response.keeps_alive())


@pytest.mark.parametrize(
    ("method", "status", "headers", "body"),
    [
        ("HEAD", "200 OK", CONTENT, b""),
        ("DELETE", "204 No Content", [("Content-Length", "0")], b""),
        ("GET", "304 Not Modified", CONTENT, b""),
        ("GET", "103 Early Hints", CONTENT, b""),
        ("GET", "200 OK", [("Content-Type", "text/plain")], b"hello"),  # no length: chunked
        ("GET", "200 OK", [("Content-Length", "five")], b"hello"),
        ("GET", "200 OK", [("Content-Length", "-1")], b"hello"),
        ("GET", "2000 OK", CONTENT, b"hello"),
        ("GET", "200 OK", [("Bad Name", "v"), *CONTENT], b"hello"),
        ("GET", "200 OK", [("X-Split", "a\r\nSet-Cookie: x"), *CONTENT], b"hello"),
        ("GET", "200 OK", [("X-Split", "a\nb"), *CONTENT], b"hello"),
        ("GET", "200 OK", [(b"X-Bytes", "v"), *CONTENT], b"hello"),
        ("GET", "200 OK", [("X-Number", 5), *CONTENT], b"hello"),
        ("GET", "200 OK", CONTENT, bytearray(b"hello")),
    ],
)
def test_anything_else_is_left_to_plainresponse(method, status, headers, body):
    assert plainhttp.encode_sized(method, "HTTP/1.1", status, headers, body, close=False) is None


@pytest.mark.parametrize(
    "headers", [[("Bad Name", "v"), *CONTENT], [("X-Split", "a\r\nSet-Cookie: x"), *CONTENT], [(b"X", "v")]]
)
def test_an_invalid_answer_still_raises_on_the_loop(headers):
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1"}
    with pytest.raises(Exception) as raised:
        encode_answer(environ, "200 OK", headers, b"hello", close=False)
    assert raised.type.__name__ in ("InvalidResponseHeader", "InvalidResponseHeaderName")
