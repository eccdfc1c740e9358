"""A FIFO admission gate in front of each upstream service, per gateway worker (HAProxy's maxconn + queue).

At most `limit` requests of a worker are inside a service at once, each until its answer has been sent
to the client (proxy.Answer gives the slot back); the rest wait in arrival order.
Under saturation the queue then lives here, in FIFO order, instead of in the services' run queues and
the GIL, where the order is random: the same throughput with a much shorter latency tail. It also bounds
what one gateway worker can pile onto a struggling service.
"""

from __future__ import annotations

import threading
from collections import deque


class FifoGate:
    def __init__(self, limit: int):
        self.limit = limit
        self._active = 0
        self._waiting: deque[threading.Lock] = deque()
        self._lock = threading.Lock()

    def enter(self, timeout: float) -> bool:
        """Wait for a slot, at most `timeout` seconds; False when none came (nothing to release then)."""
        with self._lock:
            if self._active < self.limit and not self._waiting:
                self._active += 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        if turn.acquire(timeout=max(timeout, 0)):
            return True
        with self._lock:
            try:
                self._waiting.remove(turn)
            except ValueError:
                return True  # handed a slot just as the wait ran out: it is ours now
        return False

    def leave(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # the slot passes straight to the longest waiter
            else:
                self._active -= 1

    @property
    def queued(self) -> int:
        return len(self._waiting)
