"""What one drill measured, from its attempts and its marks, and whether the written expectations hold.

Marks (wall-clock seconds, written by roles/lab_drill around its Ansible tasks): `fault_start` (before
the inject tasks), `fault_on` (after them), `heal_start`, `healed` (after the heal tasks). "During the
fault" is fault_on..heal_start; times "from the heal" count from `heal_start`, when the heal begins: a heal
is Ansible tasks that take a second or two, and the shop often recovers while they still run (systemd
has restarted a killed unit, PostgreSQL answers before `systemctl start` returns).
"""

from __future__ import annotations

import math
from collections import Counter

from shoplab_drill.load import Attempt

STEADY_BIN_S = 0.5
# Steady state: failure-free half-seconds whose median latency is back near the steady period's (the
# median, not the p99: on a shared 2-CPU machine single requests of 100-250 ms come and go in the steady
# period too; a link that is still slow moves the median).
STEADY_P50_FACTOR = 3.0
STEADY_P50_SLACK_MS = 25.0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(a: Attempt) -> float:
    return (a.end - a.start) * 1000


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def by_label(attempts: list[Attempt]) -> dict[str, int]:
    return dict(Counter(a.label for a in attempts).most_common())


def error_window(attempts: list[Attempt]) -> dict:
    """First to last failed request: from the first failed attempt's start to the last one's end."""
    failed = [a for a in attempts if not a.ok]
    if not failed:
        return {"failed": 0, "first": None, "last": None, "seconds": 0.0}
    first = min(a.start for a in failed)
    last = max(a.end for a in failed)
    return {"failed": len(failed), "first": first, "last": last, "seconds": round(last - first, 3)}


def steady_state_after(attempts: list[Attempt], since: float, until: float, baseline_p50_ms: float | None):
    """Seconds from `since` to the start of the first half-second from which every half-second up to
    `until` has no failure and a median latency near the baseline's; None if that never happens."""
    if until <= since:
        return None
    limit = None
    if baseline_p50_ms is not None:
        limit = max(baseline_p50_ms * STEADY_P50_FACTOR, baseline_p50_ms + STEADY_P50_SLACK_MS)
    bins = max(1, int((until - since) / STEADY_BIN_S))
    good = []
    for i in range(bins):
        lo, hi = since + i * STEADY_BIN_S, since + (i + 1) * STEADY_BIN_S
        inside = [a for a in attempts if lo <= a.start < hi]
        fine = all(a.ok for a in inside)
        if fine and limit is not None and inside:
            fine = (percentile([_ms(a) for a in inside], 50) or 0) <= limit
        good.append(fine)
    # The last bin that is not good; steady state starts right after it.
    bad = [i for i, fine in enumerate(good) if not fine]
    if not bad:
        return 0.0
    if bad[-1] == bins - 1:
        return None
    return round((bad[-1] + 1) * STEADY_BIN_S, 3)


def analyse(attempts: list[Attempt], marks: dict[str, float], started: float, stopped: float) -> dict:
    """The drill's figures (no judgement)."""
    fault_start = marks.get("fault_start", stopped)
    fault_on = marks.get("fault_on", fault_start)
    heal_start = marks.get("heal_start", stopped)
    healed = marks.get("healed", heal_start)
    orders = [a for a in attempts if a.kind == "order"]
    reads = [a for a in attempts if a.kind == "read"]
    before = [a for a in attempts if a.start < fault_start]
    from_fault = [a for a in attempts if a.start >= fault_start]
    during_reads = [a for a in reads if fault_on <= a.start < heal_start]
    base_orders = [_ms(a) for a in orders if a.start < fault_start and a.ok]
    base_reads = [_ms(a) for a in reads if a.start < fault_start and a.ok]
    baseline_p50 = percentile(base_orders + base_reads, 50)

    first_success = next(
        (a for a in sorted(orders, key=lambda a: a.end) if a.ok and a.end >= heal_start), None
    )
    window = error_window(from_fault)
    return {
        "times": {
            "load_start": started,
            "load_stop": stopped,
            "fault_start": fault_start,
            "fault_on": fault_on,
            "heal_start": heal_start,
            "healed": healed,
            "inject_s": _round(fault_on - fault_start),
            "fault_s": _round(heal_start - fault_on),
            "heal_s": _round(healed - heal_start),
        },
        "requests": {
            "order_attempts": by_label(orders),
            "reads": by_label(reads),
            "order_attempts_from_fault": by_label([a for a in from_fault if a.kind == "order"]),
            "reads_from_fault": by_label([a for a in from_fault if a.kind == "read"]),
        },
        "failed_before_fault": sum(not a.ok for a in before),
        "failed_reads": sum(not a.ok for a in from_fault if a.kind == "read"),
        "failed_order_attempts": sum(not a.ok for a in from_fault if a.kind == "order"),
        "error_window": {
            **window,
            "first_from_fault_s": _round(window["first"] - fault_start) if window["first"] else None,
            "last_from_heal_s": _round(window["last"] - heal_start) if window["last"] else None,
        },
        "first_success_s": _round(first_success.end - heal_start) if first_success else None,
        "steady_state_s": steady_state_after(attempts, heal_start, stopped, baseline_p50),
        "baseline": {
            "order_p50_ms": _round(percentile(base_orders, 50), 1),
            "order_p99_ms": _round(percentile(base_orders, 99), 1),
            "read_p99_ms": _round(percentile(base_reads, 99), 1),
        },
        "reads_during_fault": {
            "count": len(during_reads),
            "ok": sum(a.ok for a in during_reads),
            "by_cache": dict(Counter(a.cache or "none" for a in during_reads if a.ok).most_common()),
            "by_status": by_label(during_reads),
            "p50_ms": _round(percentile([_ms(a) for a in during_reads], 50), 1),
            "p99_ms": _round(percentile([_ms(a) for a in during_reads], 99), 1),
        },
        "orders_during_fault_p99_ms": _round(
            percentile([_ms(a) for a in orders if fault_on <= a.start < heal_start], 99), 1
        ),
        "upstreams": dict(Counter(a.upstream or "none" for a in attempts if a.ok).most_common()),
    }


def judge(expect: dict, figures: dict, verdict: dict) -> list[dict]:
    """One row per written expectation (and the set checker's own consistency): met or missed."""
    measured = {
        "lost": verdict["lost"],
        "duplicated": verdict["duplicated"],
        "unknown_max": verdict["unknown"],
        "failed_reads_max": figures["failed_reads"],
        "failed_order_attempts_max": figures["failed_order_attempts"],
        "error_window_s_max": figures["error_window"]["seconds"],
        "first_success_s_max": figures["first_success_s"],
        "steady_state_s_max": figures["steady_state_s"],
        "read_p99_ms_max": figures["reads_during_fault"]["p99_ms"],
    }
    rows = []
    for field, bound in expect.items():
        value = measured[field]
        if field in ("lost", "duplicated"):
            met = value == bound
            text = f"= {bound}"
        elif field == "read_p99_ms_max" and value is None:
            met, text = True, f"≤ {bound} (no reads during the fault)"
        else:
            met = value is not None and value <= bound
            text = f"≤ {bound}"
        rows.append({"expectation": field, "bound": text, "measured": value, "met": met})
    rows.append(
        {
            "expectation": "set_checker",
            "bound": "every acknowledged order once; stock moved by the orders created",
            "measured": "; ".join(verdict["problems"]) or "consistent",
            "met": verdict["ok"],
        }
    )
    return rows


def timeline_bins(attempts: list[Attempt], start: float, stop: float, width: float = 0.1) -> dict:
    """Successes and failures per `width` seconds (by the attempt's end), orders and reads apart."""
    count = max(1, math.ceil((stop - start) / width))
    series = {key: [0] * count for key in ("order_ok", "order_failed", "read_ok", "read_failed")}
    for a in attempts:
        index = int((a.end - start) / width)
        if 0 <= index < count:
            series[f"{a.kind}_{'ok' if a.ok else 'failed'}"][index] += 1
    return {"width": width, "start": start, **series}
