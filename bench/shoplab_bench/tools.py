"""Command lines of the load tools, every one bounded in time, and how to run them on the load host."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# Runs TOOL under `timeout`, then prints the CPU the tool used (bash's `times`: children's user+sys).
_WRAPPER = 'timeout -k 5 "$BENCH_LIMIT" "$@"; rc=$?; echo "@@times"; times; exit $rc'
_TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")

ENDPOINTS = {
    # name: (method, path for wrk, path for hey/ab, wrk Lua script or None)
    "products": ("GET", "/api/products", "/api/products", None),
    "product": ("GET", "/api/products", "/api/products/1", "get_product.lua"),
    "orders": ("POST", "/api/orders", None, "post_orders.lua"),
}


@dataclass(frozen=True)
class Load:
    """Load settings shared by every case of a run."""

    threads: int = 2
    connections: int = 64
    duration_s: int = 8
    hey_duration_s: int = 5
    hey_workers: int = 10
    hey_rate: int = 40  # per worker: hey_workers * hey_rate requests/s in all
    ab_requests: int = 3000
    ab_concurrency: int = 50
    ab_timeout_s: int = 10
    products: int = 300


def wrk_argv(load: Load, base_url: str, endpoint: str, lua_dir: str, nonce: str) -> list[str]:
    _method, path, _fixed, script = ENDPOINTS[endpoint]
    argv = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{load.duration_s}s", "--latency",
            "--timeout", "5s"]  # fmt: skip
    if script:
        argv += ["-s", f"{lua_dir}/{script}"]
    argv.append(base_url + path)
    if endpoint == "orders":
        argv += ["--", nonce, str(load.products)]
    elif script:
        argv += ["--", str(load.products)]
    return argv


def hey_argv(load: Load, base_url: str, endpoint: str) -> list[str]:
    path = ENDPOINTS[endpoint][2]
    return ["hey", "-z", f"{load.hey_duration_s}s", "-c", str(load.hey_workers), "-q", str(load.hey_rate),
            "-t", "5", base_url + path]  # fmt: skip


def ab_argv(load: Load, base_url: str, endpoint: str, keep_alive: bool) -> list[str]:
    path = ENDPOINTS[endpoint][2]
    argv = [
        "ab",
        "-q",
        "-n",
        str(load.ab_requests),
        "-c",
        str(load.ab_concurrency),
        "-s",
        str(load.ab_timeout_s),
    ]
    if keep_alive:
        argv.append("-k")
    return [*argv, base_url + path]


def duration_of(argv: Sequence[str], load: Load) -> int | None:
    """Seconds a tool runs for when its run is timed (wrk, hey); None for ab (a number of requests)."""
    return {"wrk": load.duration_s, "hey": load.hey_duration_s}.get(argv[0])


def limit_for(argv: Sequence[str], load: Load) -> int:
    """Seconds `timeout` allows the tool: its duration plus slack (ab: bounded by its request timeout)."""
    duration = duration_of(argv, load)
    return duration + 15 if duration is not None else min(120, 30 + load.ab_timeout_s * 2)


@dataclass
class Ran:
    argv: list[str]
    returncode: int
    output: str
    tool_cpu_s: float | None
    wall_s: float


def run(prefix: Sequence[str], argv: Sequence[str], limit_s: int) -> Ran:
    """Run argv on the load host (`prefix`: docker exec / ip netns exec …), bounded by `limit_s`."""
    import time

    full = [*prefix, "env", f"BENCH_LIMIT={limit_s}", "bash", "-c", _WRAPPER, "bench", *argv]
    started = time.monotonic()
    try:
        done = subprocess.run(full, capture_output=True, text=True, timeout=limit_s + 30, check=False)
        out, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else ""
        code = 124
    wall = time.monotonic() - started
    output, _, tail = out.partition("@@times")
    cpu = None
    times = _TIMES.findall(tail)
    if len(times) >= 2:  # second line: the children (the tool)
        m1, s1, m2, s2 = times[1]
        cpu = int(m1) * 60 + float(s1) + int(m2) * 60 + float(s2)
    return Ran(list(argv), code, output.strip("\n") + "\n", cpu, wall)


def versions(prefix: Sequence[str]) -> dict[str, str]:
    """Versions of the load tools and nginx on a load host (Debian package versions, plus wrk -v)."""
    found = {}
    query = subprocess.run(
        [*prefix, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "wrk", "hey", "apache2-utils",
         "nginx-light", "nginx"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    for line in query.stdout.splitlines():
        name, _, version = line.partition(" ")
        if version:
            found[name] = version
    wrk = subprocess.run([*prefix, "wrk", "-v"], capture_output=True, text=True, timeout=30, check=False)
    first = (wrk.stdout + wrk.stderr).splitlines()
    if first:
        found["wrk -v"] = first[0].strip()
    return found
