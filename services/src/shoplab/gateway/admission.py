"""A FIFO admission gate in front of each upstream service, per gateway worker (HAProxy's maxconn + queue).

At most `limit` requests of a worker are inside a service at once, each until its answer has been sent
to the client; the rest wait in arrival order.
Under saturation the queue then lives here, in FIFO order, instead of in the services' run queues, where
the order is random: the same throughput with a much shorter latency tail. It also bounds what one
gateway worker can pile onto a struggling service.

Threads wait on a lock (`enter`); the event loop queues a callback instead (`enter_or_queue`). Both kinds of
waiter share one queue, so a worker's limit holds for its loop and its threads together.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class FifoGate:
    def __init__(self, limit: int):
        self.limit = limit
        self._active = 0
        self._waiting: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()

    def enter(self, timeout: float) -> bool:
        """Wait for a slot, at most `timeout` seconds; False when none came (nothing to release then)."""
        turn = threading.Lock()
        turn.acquire()
        if self.enter_or_queue(turn.release):
            return True
        if turn.acquire(timeout=max(timeout, 0)):
            return True
        return not self.cancel(turn.release)  # handed a slot just as the wait ran out: it is ours now

    def enter_or_queue(self, granted: Callable[[], None]) -> bool:
        """True: a slot is taken now. False: `granted` is queued and will be called (from whichever thread
        leaves) once a slot passes to it, unless `cancel` removes it first."""
        with self._lock:
            if self._active < self.limit and not self._waiting:
                self._active += 1
                return True
            self._waiting.append(granted)
            return False

    def cancel(self, granted: Callable[[], None]) -> bool:
        """Take a queued waiter back; False when it was already granted a slot (then it must leave)."""
        with self._lock:
            try:
                self._waiting.remove(granted)
            except ValueError:
                return False
            return True

    def leave(self) -> None:
        with self._lock:
            if not self._waiting:
                self._active -= 1
                return
            granted = self._waiting.popleft()  # the slot passes straight to the longest waiter
        granted()

    @property
    def queued(self) -> int:
        return len(self._waiting)
