"""The gateway's HTTP/1.1 response reader (shoplab.server.upstream.ResponseParser), which the blocking pool
and the event loop share, fed the way a socket delivers bytes: whole, in pieces, or one at a time."""

from __future__ import annotations

import pytest
from shoplab.server.upstream import ResponseParser, _Closed

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"id": 7}'


def feed_in_pieces(
    raw: bytes, size: int, head_request: bool = False, then_close: bool = False
) -> ResponseParser:
    parser = ResponseParser(head_request)
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
    complete = False
    for n, piece in enumerate(pieces):
        complete = parser.feed(piece)
        assert complete == (n == len(pieces) - 1 and not then_close), f"complete too early at piece {n}"
    if then_close:
        assert parser.feed(b"")
    return parser


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_content_length_answer_in_any_pieces(size):
    parser = feed_in_pieces(OK, size)
    response = parser.response
    assert (response.status, response.reason, response.body) == (200, "OK", b'{"id": 7}')
    assert ("Content-Type", "application/json") in response.headers
    assert parser.keep_alive


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_a_chunked_answer_with_trailers(size):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = head + b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"
    parser = feed_in_pieces(raw, size)
    assert parser.response.body == b"Wikipedia"
    assert parser.keep_alive


def test_a_close_delimited_answer_ends_when_the_server_closes():
    parser = feed_in_pieces(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", 4, then_close=True)
    assert parser.response.body == b"until the end"
    assert not parser.keep_alive


@pytest.mark.parametrize(
    ("raw", "head_request"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
            True,
        ),  # HEAD: the length says what GET would send
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n", False),
    ],
)
def test_answers_without_a_body(raw, head_request):
    parser = feed_in_pieces(raw, 3, head_request=head_request)
    assert parser.response.body == b""
    assert parser.keep_alive


def test_interim_answers_are_skipped():
    parser = feed_in_pieces(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK, 10
    )
    assert parser.response.status == 200
    assert ("Link", "</a>") not in parser.response.headers


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (OK + b"HTTP/1.1 200 OK\r\n", False),  # bytes nobody asked for: the connection is not reused
    ],
)
def test_whether_the_connection_can_carry_another_request(raw, keep_alive):
    parser = ResponseParser(head_request=False)
    assert parser.feed(raw)
    assert parser.keep_alive is keep_alive


def test_a_server_that_closes_before_answering_is_told_apart():
    parser = ResponseParser(head_request=False)
    with pytest.raises(_Closed):  # nothing was received: a GET may be sent again on a fresh connection
        parser.feed(b"")
    assert not parser.received_any


@pytest.mark.parametrize(
    "raw",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"id"',  # closed inside the body
        b"HTTP/1.1 200 OK\r\nContent-Le",  # closed inside the head
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi",  # closed inside a chunk
    ],
)
def test_a_connection_closed_inside_an_answer_is_an_error(raw):
    parser = ResponseParser(head_request=False)
    assert not parser.feed(raw)
    with pytest.raises(ValueError, match="closed inside"):
        parser.feed(b"")
    assert parser.received_any


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_bytes_that_are_not_an_answer_are_an_error(raw):
    with pytest.raises(ValueError):
        ResponseParser(head_request=False).feed(raw)


def test_a_head_that_never_ends_is_refused():
    parser = ResponseParser(head_request=False)
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ValueError, match="too large"):
        for _ in range(2000):
            parser.feed(b"X-Filler: " + b"v" * 100 + b"\r\n")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n" + b"x" * 101,  # said up front
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"40\r\n" + b"x" * 64 + b"\r\n") * 3,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 20_000,  # until the close: never comes
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_a_body_past_the_limit_is_refused_before_it_is_all_held(raw):
    parser = ResponseParser(head_request=False, max_body=100)
    pieces = [raw[n : n + 64] for n in range(0, len(raw), 64)]
    fed = 0
    with pytest.raises(ValueError, match="100"):
        for piece in pieces:
            fed += 1
            parser.feed(piece)
    assert fed < len(pieces)  # refused as soon as it was more, not once it was all there


def test_a_body_at_the_limit_is_taken():
    body = b"x" * 100
    parser = ResponseParser(head_request=False, max_body=100)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body)
    assert parser.response.body == body
