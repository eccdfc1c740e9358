"""The gateway's FIFO admission gate (shoplab.gateway.admission), with real threads."""

from __future__ import annotations

import threading
import time

from shoplab.gateway.admission import FifoGate


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_waiters_are_admitted_in_arrival_order():
    gate = FifoGate(limit=1)
    assert gate.enter(timeout=1)
    admitted: list[int] = []

    def visitor(n: int) -> None:
        assert gate.enter(timeout=10)
        admitted.append(n)
        gate.leave()

    threads = []
    for n in range(8):
        thread = threading.Thread(target=visitor, args=(n,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: gate.queued == n + 1)  # queued strictly one after the other
    gate.leave()
    for thread in threads:
        thread.join(timeout=10)
    assert admitted == list(range(8))


def test_up_to_the_limit_enter_without_waiting():
    gate = FifoGate(limit=3)
    assert all(gate.enter(timeout=0) for _ in range(3))
    assert not gate.enter(timeout=0)


def test_a_timed_out_waiter_leaves_no_trace():
    gate = FifoGate(limit=1)
    assert gate.enter(timeout=1)
    assert not gate.enter(timeout=0.05)
    assert gate.queued == 0
    gate.leave()
    assert gate.enter(timeout=0)  # the slot came back: nothing leaked to the timed-out waiter
