"""The drill's load: orders and catalogue reads through the gateway, each at a fixed arrival rate.

Open loop: request i is due at start + i / rate whatever happened to the ones before (a closed loop
would slow down with the shop and hide the outage). Every order is one logical request with its own
Idempotency-Key; a careful client retries it with the SAME key on 502/503/504, connection errors and
timeouts, with bounded exponential backoff (jittered, capped, honouring Retry-After up to the cap), and
gives up after `give_up_s`: the outcome is then unknown to it, and the set checker asks PostgreSQL.
Reads are single attempts, so every failure the shop lets through is seen.

Every attempt is recorded (wall-clock start and end, status or error, X-Cache, X-Upstream-Instance);
the analysis and the timeline are computed from these records afterwards.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class Attempt:
    kind: str  # "order" | "read"
    seq: int  # the order's or the read's number
    attempt: int  # 1, 2, … (reads: always 1)
    start: float  # time.time()
    end: float
    status: int | None  # HTTP status, None when no answer
    error: str | None = None  # timeout | reset | refused | connect | other:<name>
    cache: str | None = None  # X-Cache
    upstream: str | None = None  # X-Upstream-Instance

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def label(self) -> str:
        return str(self.status) if self.status is not None else (self.error or "error")


@dataclass
class Order:
    seq: int
    key: str
    scheduled: float
    outcome: str = "pending"  # acked | rejected | unknown
    order_id: int | None = None
    status: int | None = None
    attempts: int = 0
    replayed: bool = False
    acked_at: float | None = None


@dataclass
class LoadSettings:
    base_url: str
    product_id: int
    products: int  # reads pick ids 1..products
    order_rate: float
    read_rate: float
    key_prefix: str
    connect_timeout_s: float = 1.0
    attempt_timeout_s: float = 3.0
    read_timeout_s: float = 2.0
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 1.0
    give_up_s: float = 20.0
    max_workers: int = 256


def classify(error: BaseException) -> str:
    """A short name for a failed attempt without an answer."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    text = repr(error)
    for name, marks in (
        ("reset", ("ConnectionResetError", "Connection reset", "RemoteDisconnected", "BrokenPipe")),
        ("refused", ("ConnectionRefusedError", "Connection refused")),
    ):
        if any(mark in text for mark in marks):
            return name
    if isinstance(error, requests.ConnectionError):
        return "connect"
    return f"other:{type(error).__name__}"


def backoff(attempt: int, base: float, cap: float, retry_after: str | None = None, rng=random) -> float:
    """Seconds to wait before attempt `attempt + 1`: base·2^(attempt-1), jittered to 50-100 %, capped."""
    delay = min(cap, base * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)
    if retry_after:
        with contextlib.suppress(ValueError):
            delay = max(delay, min(cap, float(retry_after)))
    return delay


class Load:
    """Runs the two arrival processes until stop(); `attempts` and `orders` hold what happened."""

    def __init__(self, settings: LoadSettings, clock: Callable[[], float] = time.time):
        self.s = settings
        self.clock = clock
        self.attempts: list[Attempt] = []
        self.orders: list[Order] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="drill")
        self._dispatchers: list[threading.Thread] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.late: dict[str, float] = {"order": 0.0, "read": 0.0}  # worst dispatch lateness, s

    # --- HTTP -----------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def _send(self, kind: str, seq: int, number: int, *, method: str, url: str, timeout, **kwargs):
        start = self.clock()
        try:
            response = self._session().request(method, url, timeout=timeout, **kwargs)
        except requests.RequestException as error:
            # A broken pooled connection must not be reused by the next attempt.
            self._local.session = None
            self._record(Attempt(kind, seq, number, start, self.clock(), None, classify(error)))
            return None
        headers = response.headers
        self._record(
            Attempt(
                kind,
                seq,
                number,
                start,
                self.clock(),
                response.status_code,
                cache=headers.get("X-Cache"),
                upstream=headers.get("X-Upstream-Instance"),
            )
        )
        return response

    # --- one order, retried with its key --------------------------------------------------------
    def place(self, order: Order) -> Order:
        s = self.s
        url = f"{s.base_url}/api/orders"
        body = {"items": [{"product_id": s.product_id, "quantity": 1}]}
        headers = {"Idempotency-Key": order.key}
        deadline = self.clock() + s.give_up_s
        number = 0
        while True:
            number += 1
            order.attempts = number
            response = self._send(
                "order", order.seq, number, method="POST", url=url,
                timeout=(s.connect_timeout_s, s.attempt_timeout_s), json=body, headers=headers,
            )  # fmt: skip
            retry_after = None
            if response is not None:
                order.status = response.status_code
                if 200 <= response.status_code < 300:
                    order.outcome = "acked"
                    order.acked_at = self.clock()
                    order.replayed = response.headers.get("Idempotent-Replayed") == "true"
                    try:
                        order.order_id = int(response.json()["id"])
                    except (ValueError, KeyError, TypeError):
                        order.order_id = None
                    return order
                if response.status_code not in RETRY_STATUSES:
                    # 4xx: the shop said no (nothing was written); 500: a bug, outcome unknown.
                    order.outcome = "rejected" if response.status_code < 500 else "unknown"
                    return order
                retry_after = response.headers.get("Retry-After")
            else:
                order.status = None
            wait = backoff(number, s.backoff_base_s, s.backoff_cap_s, retry_after)
            if self.clock() + wait >= deadline:
                order.outcome = "unknown"
                return order
            time.sleep(wait)

    def read(self, seq: int, product_id: int) -> None:
        s = self.s
        url = f"{s.base_url}/api/products/{product_id}"
        self._send("read", seq, 1, method="GET", url=url, timeout=(s.connect_timeout_s, s.read_timeout_s))

    # --- arrival processes ----------------------------------------------------------------------
    def _dispatch(self, kind: str, rate: float, submit: Callable[[int, float], None]) -> None:
        start = self.started_at
        seq = 0
        while not self._stop.is_set():
            due = start + seq / rate
            now = self.clock()
            if due > now:
                if self._stop.wait(due - now):
                    return
            else:
                self.late[kind] = max(self.late[kind], now - due)
            submit(seq, due)
            seq += 1

    def _submit_order(self, seq: int, due: float) -> None:
        order = Order(seq, f"{self.s.key_prefix}{seq}", due)
        with self._lock:
            self.orders.append(order)
        self._pool.submit(self.place, order)

    def _submit_read(self, seq: int, due: float) -> None:
        self._pool.submit(self.read, seq, random.randint(1, self.s.products))

    def start(self) -> None:
        self.started_at = self.clock()
        for kind, rate, submit in (
            ("order", self.s.order_rate, self._submit_order),
            ("read", self.s.read_rate, self._submit_read),
        ):
            if rate > 0:
                thread = threading.Thread(target=self._dispatch, args=(kind, rate, submit), daemon=True)
                thread.start()
                self._dispatchers.append(thread)

    def stop(self, wait: bool = True) -> None:
        """No new requests; with wait, let every order in flight finish (retries included, bounded)."""
        self._stop.set()
        for thread in self._dispatchers:
            thread.join()
        self.stopped_at = self.clock()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def snapshot(self) -> tuple[list[Attempt], list[Order]]:
        with self._lock:
            return list(self.attempts), list(self.orders)


def attempts_as_rows(attempts: list[Attempt]) -> list[list]:
    """Compact rows for attempts.json: kind, seq, attempt, start, end, status, error, cache, upstream."""
    return [[a.kind, a.seq, a.attempt, round(a.start, 4), round(a.end, 4), a.status, a.error, a.cache,
             a.upstream] for a in attempts]  # fmt: skip


def attempts_from_rows(rows: list[list]) -> list[Attempt]:
    return [Attempt(*row) for row in rows]


def orders_as_dicts(orders: list[Order]) -> list[dict]:
    return [asdict(o) for o in orders]
