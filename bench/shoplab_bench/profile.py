"""py-spy against the loopback gateway under wrk load: which frames the gateway's CPU goes to."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from shoplab_bench import tools


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


# Where a frame's file puts it (first match wins); `plumbing` frames are left out of the inclusive table.
AREAS = (
    ("shoplab/core/logs", "logging (buffered JSON access lines)"),
    ("logging/", "logging (other records)"),
    ("json/", "JSON encoding (log lines)"),
    ("shoplab/gateway/admission", "FIFO admission gate"),
    ("shoplab/server/gateway_worker", "our event-loop worker (accept, client connections, answers)"),
    ("shoplab/server/loop_upstream", "our non-blocking upstream pool"),
    ("shoplab/server/eventloop", "event loop (selectors)"),
    ("shoplab/server/loop_worker", "our event-loop worker (accept, client connections, answers)"),
    ("shoplab/server/upstream", "our proxy (upstream client, balancer)"),
    ("shoplab/gateway", "our proxy (upstream client, balancer)"),
    ("shoplab/server/worker", "our keep-alive worker (accept, connection loop)"),
    ("shoplab/server/plainhttp", "our plain-HTTP/1.1 path (parsing, answers)"),
    ("shoplab/", "other shoplab code"),
    ("gunicorn/http", "gunicorn HTTP parsing and writing"),
    ("gunicorn/", "gunicorn worker (other)"),
    ("concurrent/futures", "thread pool hand-off"),
    ("threading", "thread pool hand-off"),
    ("selectors", "event loop (selectors)"),
    ("socket", "socket I/O"),
)
PLUMBING = ("threading", "concurrent/futures", "runpy", "gunicorn/arbiter", "gunicorn/app",
            "gunicorn/workers/base", "shoplab/serve", "<frozen")  # fmt: skip


def area(frame: str) -> str:
    return next((name for key, name in AREAS if f"({key}" in frame), "other")


def summarize(collapsed: str, top: int = 15) -> dict:
    """Top frames by self samples and by inclusive samples from py-spy's `raw` (collapsed) output."""
    own, inclusive, areas, total = Counter(), Counter(), Counter(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split(":")[0] + ")" if " (" in f else f
                  for f in stack.split(";")]  # fmt: skip
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += n
        areas[area(frames[-1])] += n
        for frame in set(frames):
            if not any(f"({p}" in frame for p in PLUMBING):
                inclusive[frame] += n

    def table(counter: Counter) -> list[dict]:
        return [{"frame": f, "samples": n, "percent": round(100 * n / max(1, total), 1)}
                for f, n in counter.most_common(top)]  # fmt: skip

    return {"samples": total, "self": table(own), "inclusive": table(inclusive), "areas": table(areas)}


def profile_gateway(floor, load: tools.Load, seconds: int) -> dict:
    binary = py_spy()
    if not binary:
        return {"error": "py-spy not installed (pip install py-spy into .venv)"}
    pid = floor.stack.gateway.popen.pid
    with tempfile.TemporaryDirectory(prefix="shoplab-bench-") as tmp:
        out = Path(tmp) / "gateway.txt"
        argv = [binary, "record", "--subprocesses", "--pid", str(pid), "--duration", str(seconds),
                "--rate", "200", "--gil", "--format", "raw", "--output", str(out)]  # fmt: skip
        spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wrk_load = tools.Load(**{**load.__dict__, "duration_s": seconds + 1})
        ran = tools.run([], tools.wrk_argv(wrk_load, floor.gateway, "products", "", "profile"), seconds + 15)
        try:
            log, _ = spy.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            log, _ = spy.communicate()
        if spy.returncode != 0 or not out.exists():
            return {"error": f"py-spy failed ({spy.returncode}): {log[-2000:]}", "command": argv}
        summary = summarize(out.read_text())
    summary["command"] = argv
    summary["load"] = ran.argv
    summary["target"] = "floor-gateway GET /api/products"
    return summary
