"""The gateway's small event loop (shoplab.server.eventloop): readiness, timers, calls from other threads."""

from __future__ import annotations

import selectors
import socket
import threading
import time

from helpers import run_until
from shoplab.server import eventloop


def test_timers_run_in_time_order_and_cancelled_ones_never(loop):
    ran = []
    loop.call_later(0.06, ran.append, "late")
    loop.call_later(0.02, ran.append, "early")
    loop.call_later(0.04, ran.append, "cancelled").cancel()
    run_until(loop, lambda: len(ran) == 2)
    time.sleep(0.05)
    loop.run_once(0)
    assert ran == ["early", "late"]


def test_a_readable_socket_calls_its_callback(loop):
    ours, peer = socket.socketpair()
    with ours, peer:
        got = []
        loop.register(ours, selectors.EVENT_READ, lambda events: got.append(ours.recv(100)))
        peer.sendall(b"ping")
        run_until(loop, lambda: got)
        assert got == [b"ping"]


def test_a_call_from_another_thread_wakes_a_waiting_loop(loop):
    got = []
    threading.Timer(0.1, loop.call_soon_threadsafe, args=(got.append, "from a thread")).start()
    started = time.monotonic()
    loop.run_once(10)  # would wait 10 s if the call did not wake it
    loop.run_once(0)
    assert got == ["from a thread"]
    assert time.monotonic() - started < 5


def test_blocking_work_runs_on_a_thread_and_its_result_comes_back_on_the_loop(loop):
    results = []
    loop_thread = threading.get_ident()
    loop.run_in_thread(lambda: (time.sleep(0.05), threading.get_ident())[1], results.append)
    run_until(loop, lambda: results)
    assert results[0] != loop_thread  # the work ran elsewhere; `then` got its result here


def test_cancelled_timers_do_not_pile_up(loop):
    keep = loop.call_later(60, lambda: None)
    for _ in range(eventloop.CLEANUP_AT * 3):
        loop.call_later(30, lambda: None).cancel()
    assert len(loop._timers) <= eventloop.CLEANUP_AT + 2
    assert not keep.cancelled and any(entry[2] is keep for entry in loop._timers)


def test_work_that_fails_on_its_thread_still_comes_back(loop):
    results = []
    loop.run_in_thread(lambda: 1 / 0, results.append)
    run_until(loop, lambda: results)
    assert isinstance(results[0], ZeroDivisionError)
