"""Parse the text the load tools print (wrk 4.1 --latency, hey 0.1.4, ab 2.3) into plain dicts.

Every result has the same core keys, whatever the tool: `requests`, `duration_s`, `rps`,
`latency_ms` ({"mean", "p50", "p90", "p99", …}), `non_2xx` (responses outside 2xx; wrk counts 3xx as
fine, as do the others for our API which never redirects), `errors` (socket errors, timeouts).
"""

from __future__ import annotations

import re

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


class ParseError(ValueError):
    """The tool's output does not look like a finished run."""


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if not match:
        raise ParseError(f"not a duration: {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _search(pattern: str, text: str, what: str, flags: int = re.MULTILINE) -> re.Match:
    match = re.search(pattern, text, flags)
    if not match:
        raise ParseError(f"{what} not found in the output")
    return match


def parse_wrk(text: str) -> dict:
    summary = _search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", text, "wrk summary")
    rps = float(_search(r"^Requests/sec:\s+([\d.]+)", text, "Requests/sec").group(1))
    lat = _search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, "wrk latency line")
    percentiles = {
        f"p{int(float(p))}": _ms(v) for p, v in re.findall(r"^\s+([\d.]+)%\s+(\S+)\s*$", text, re.MULTILINE)
    }
    if "p99" not in percentiles:
        raise ParseError("wrk latency distribution missing (run wrk with --latency)")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
        if sock
        else {}
    )
    return {
        "tool": "wrk",
        "requests": int(summary.group(1)),
        "duration_s": _ms(summary.group(2)) / 1000,
        "rps": rps,
        "latency_ms": {"mean": _ms(lat.group(1)), "stdev": _ms(lat.group(2)), "max": _ms(lat.group(3)),
                       **percentiles},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "errors": sum(errors.values()),
        "error_detail": errors,
    }  # fmt: skip


def parse_hey(text: str) -> dict:
    total = float(_search(r"^\s*Total:\s+([\d.]+) secs", text, "hey Total").group(1))
    rps = float(_search(r"^\s*Requests/sec:\s+([\d.]+)", text, "hey Requests/sec").group(1))
    mean = float(_search(r"^\s*Average:\s+([\d.]+) secs", text, "hey Average").group(1)) * 1000
    slowest = float(_search(r"^\s*Slowest:\s+([\d.]+) secs", text, "hey Slowest").group(1)) * 1000
    percentiles = {
        f"p{p}": float(v) * 1000 for p, v in re.findall(r"^\s*(\d+)% in ([\d.]+) secs", text, re.MULTILINE)
    }
    statuses = {
        int(c): int(n) for c, n in re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", text, re.MULTILINE)
    }
    errors = 0
    if "Error distribution:" in text:
        block = text.split("Error distribution:", 1)[1]
        errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", block, re.MULTILINE))
    answered = sum(statuses.values())
    return {
        "tool": "hey",
        "requests": answered + errors,
        "duration_s": total,
        "rps": rps,
        "latency_ms": {"mean": mean, "max": slowest, **percentiles},
        "statuses": statuses,
        "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "errors": errors,
    }  # fmt: skip


def parse_ab(text: str) -> dict:
    complete = int(_search(r"^Complete requests:\s+(\d+)", text, "ab Complete requests").group(1))
    failed = int(_search(r"^Failed requests:\s+(\d+)", text, "ab Failed requests").group(1))
    non_2xx = re.search(r"^Non-2xx responses:\s+(\d+)", text, re.MULTILINE)
    keep_alive = re.search(r"^Keep-Alive requests:\s+(\d+)", text, re.MULTILINE)
    taken = float(_search(r"^Time taken for tests:\s+([\d.]+) seconds", text, "ab time taken").group(1))
    rps = float(_search(r"^Requests per second:\s+([\d.]+)", text, "ab Requests per second").group(1))
    mean = float(_search(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$", text, "ab mean").group(1))
    percentiles = {
        f"p{p}": float(v)
        for p, v in re.findall(r"^\s+(\d+)%\s+(\d+)(?: \(longest request\))?$", text, re.MULTILINE)
    }
    if "p100" in percentiles:
        percentiles["max"] = percentiles.pop("p100")
    return {
        "tool": "ab",
        "requests": complete,
        "duration_s": taken,
        "rps": rps,
        "latency_ms": {"mean": mean, **percentiles},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "errors": failed,
        "keep_alive_requests": int(keep_alive.group(1)) if keep_alive else 0,
    }


PARSERS = {"wrk": parse_wrk, "hey": parse_hey, "ab": parse_ab}
