"""The event loop's Redis client (shoplab.server.loop_redis): the replies it reads, in pieces, against a real
Redis server, and what it does when the server fails, stays silent or answers something unexpected."""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from helpers import run_until
from shoplab.devtools.servers import LOOPBACK
from shoplab.server.loop_redis import (
    LoopRedis,
    RedisProtocolError,
    RedisReplyError,
    encode_command,
    parse_reply,
)


def replies(loop, client: LoopRedis, *commands: tuple) -> list[tuple]:
    """Send `commands` back to back; the (reply, error) of each, in the order they were answered."""
    got: list[tuple] = []
    for command in commands:
        client.call(command, lambda reply, error: got.append((reply, error)))
    run_until(loop, lambda: len(got) == len(commands))
    return got


def test_commands_are_encoded_as_arrays_of_bulk_strings():
    assert encode_command("HGET", "pages", "1:20") == b"*3\r\n$4\r\nHGET\r\n$5\r\npages\r\n$4\r\n1:20\r\n"
    assert encode_command("SELECT", 2) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
    assert encode_command("GET", "k\xe9") == b"*2\r\n$3\r\nGET\r\n$3\r\nk\xc3\xa9\r\n"


def test_every_reply_kind_is_read_whole_and_in_pieces():
    stream = b"$5\r\nhe\r\no\r\n$-1\r\n+OK\r\n:42\r\n-ERR wrong\r\n$0\r\n\r\n"
    expected = [b"he\r\no", None, b"OK", 42, "ERR wrong", b""]

    def read_all(data: bytes) -> list:
        found, offset = [], 0
        while (parsed := parse_reply(data, offset)) is not None:
            reply, offset = parsed
            found.append(str(reply) if isinstance(reply, RedisReplyError) else reply)
        return found

    assert read_all(stream) == expected
    for cut in range(len(stream)):  # a reply cut anywhere is incomplete, never misread
        head = read_all(stream[:cut])
        assert head == expected[: len(head)]


def test_replies_it_does_not_read_are_protocol_errors():
    for bad in (b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"$3\r\nabcXY", b"$x\r\n", b"?\r\n"):
        with pytest.raises((RedisProtocolError, ValueError)):
            parse_reply(bad, 0)


def test_reads_from_a_real_server_come_back_in_the_order_they_were_sent(loop, servers):
    server = servers.start_redis()
    blocking = redis.Redis(host=LOOPBACK, port=server.port)
    blocking.set("item", b'{"id":1}')
    blocking.hset("pages", mapping={f"{n}:20": f"page {n}" for n in range(1, 51)})
    client = LoopRedis(loop, (LOOPBACK, server.port), timeout=2)
    commands = [("HGET", "pages", f"{n}:20") for n in range(1, 51)] + [("GET", "item"), ("GET", "none")]
    got = replies(loop, client, *commands)
    assert [reply for reply, _ in got] == [f"page {n}".encode() for n in range(1, 51)] + [b'{"id":1}', None]
    assert all(error is None for _, error in got)
    # A command Redis refuses is that command's error; the connection goes on serving the next one.
    (_, error), (reply, _) = replies(loop, client, ("GET", "pages"), ("GET", "item"))
    assert isinstance(error, RedisReplyError) and "WRONGTYPE" in str(error)
    assert reply == b'{"id":1}'
    client.close()


def test_it_authenticates_and_selects_the_database_from_redis_py_settings(loop, servers):
    server = servers.start_redis(password="s3cret")
    redis.Redis(host=LOOPBACK, port=server.port, password="s3cret", db=3).set("item", b"in db 3")
    kwargs = redis.Redis.from_url(
        f"redis://:s3cret@{LOOPBACK}:{server.port}/3"
    ).connection_pool.connection_kwargs
    client = LoopRedis.from_connection_kwargs(loop, kwargs, timeout=2)
    assert replies(loop, client, ("GET", "item")) == [(b"in db 3", None)]
    client.close()
    wrong = LoopRedis(loop, (LOOPBACK, server.port), timeout=2, handshake=(("AUTH", "nope"),))
    [(reply, error)] = replies(loop, wrong, ("GET", "item"))
    assert reply is None and error is not None  # never an answer read as if authenticated
    assert LoopRedis.from_connection_kwargs(loop, {"host": "x", "ssl": True}, 1) is None


def test_a_server_that_dies_fails_the_waiting_commands_and_the_next_one_reconnects(loop, servers):
    server = servers.start_redis()
    client = LoopRedis(loop, (LOOPBACK, server.port), timeout=2)
    assert replies(loop, client, ("GET", "k")) == [(None, None)]
    server.kill()
    [(reply, error)] = replies(loop, client, ("GET", "k"))
    assert reply is None and isinstance(error, RedisProtocolError)
    servers.start_redis("redis-again", port=server.port)
    assert replies(loop, client, ("GET", "k")) == [(None, None)]
    client.close()


def test_silence_past_the_timeout_fails_every_waiting_command(loop):
    with socket.create_server((LOOPBACK, 0)) as listener:
        accepted = []
        threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
        client = LoopRedis(loop, listener.getsockname(), timeout=0.3)
        got = replies(loop, client, ("GET", "a"), ("GET", "b"))
        assert [reply for reply, _ in got] == [None, None]
        assert all(isinstance(error, RedisProtocolError) and "0.3" in str(error) for _, error in got)
        assert client.sock is None  # closed: a late reply can never be read as another command's


def test_an_unexpected_reply_fails_the_connection(loop):
    with socket.create_server((LOOPBACK, 0)) as listener:

        def answer_with_an_array() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(b"*1\r\n$1\r\nx\r\n")

        threading.Thread(target=answer_with_an_array, daemon=True).start()
        client = LoopRedis(loop, listener.getsockname(), timeout=2)
        [(reply, error)] = replies(loop, client, ("GET", "a"))
        assert reply is None and isinstance(error, RedisProtocolError)
        assert client.sock is None
