"""CPU and context switches per process group, sampled at the start and end of a case.

CPU: /proc/<pid>/stat (utime + stime, the whole process, threads that ended included). Context switches:
voluntary + nonvoluntary of each thread (/proc/<pid>/task/<tid>/status), counted per thread; a thread that
ends takes its count with it, so they are sampled inside a timed run (`SwitchWindow`), while the load
tool's connections, and the threads serving them, are still open.

Processes are sorted into a scope (which deployment they belong to) and a group (what they are):
  scope  floor   descendants of the benchmark runner (the loopback stack and nginx it started)
         netns   processes in the lab-host container's cgroup (or, on a systemd host, shoplab-* units)
         docker  processes of a container of the shoplab Compose project
         engine  docker-proxy, dockerd, containerd (the Docker engine's share of the work)
         <mode>  also: the QEMU process of a lab VM the mode runs in (bench_lab=vm), group `vm`: the
                 guest's whole work, services, kernel and emulation (TCG) alike, as one figure
         other   everything else (other jobs on the machine: reported as a total, never attributed)
  group  gateway, product, order, registry (shoplab-serve/shoplab.serve <service>), redis, postgres,
         nginx, journald, docker-proxy, dockerd, containerd, other
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
_SWITCHES = re.compile(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)$", re.MULTILINE)
_SERVE = re.compile(r"shoplab[.-]serve\s+(gateway|product|order|registry)\b")
_COMM_GROUPS = {
    "redis-server": "redis",
    "postgres": "postgres",
    "nginx": "nginx",
    "systemd-journal": "journald",
    "docker-proxy": "docker-proxy",
    "qemu-system-x86": "vm",
    "dockerd": "dockerd",
    "containerd": "containerd",
    "containerd-shim": "containerd",
    "containerd-shim-runc-v2": "containerd",
}
_ENGINE = {"docker-proxy", "dockerd", "containerd"}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    ticks: int
    cmdline: str
    cgroup: str
    switches: tuple[tuple[int, int], ...] = ()  # (thread id, context switches so far) per thread


def read_switches(base: Path) -> tuple[tuple[int, int], ...]:
    """(tid, voluntary + nonvoluntary context switches) of every thread of the process at `base`."""
    found = []
    try:
        tasks = list((base / "task").iterdir())
    except OSError:
        return ()
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        found.append((int(task.name), sum(int(n) for n in _SWITCHES.findall(status))))
    return tuple(sorted(found))


def read_proc(pid: int, proc: Path = Path("/proc"), threads: bool = False) -> Proc | None:
    """One process; `threads`: also its threads' context switches (a file per thread, so only on demand)."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text()
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        cgroup = (base / "cgroup").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: it ends at the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    ticks = int(fields[11]) + int(fields[12])
    return Proc(pid, int(fields[1]), comm, ticks, cmdline, cgroup, read_switches(base) if threads else ())


def snapshot(proc: Path = Path("/proc"), threads: bool = False, pids=None) -> dict[int, Proc]:
    """Every process, or only `pids` (those still running)."""
    if pids is None:
        pids = [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]
    found = {}
    for pid in pids:
        info = read_proc(pid, proc, threads)
        if info:
            found[info.pid] = info
    return found


def machine_ticks(proc: Path = Path("/proc")) -> tuple[int, int]:
    """(busy, total) jiffies over every CPU, from the first line of /proc/stat."""
    values = [int(v) for v in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class Classifier:
    runner_pid: int
    netns_cgroup: str | None = None  # e.g. "/docker/<labhost id>" or "/system.slice/shoplab-"
    docker_ids: frozenset[str] = field(default_factory=frozenset)  # shoplab project container ids
    roots: dict[int, str] = field(default_factory=dict)  # pid -> scope: ours, a VM QEMU

    def group(self, p: Proc) -> str:
        match = _SERVE.search(p.cmdline)
        if match:
            return match.group(1)
        comm = p.comm.split(":")[0].strip()
        return _COMM_GROUPS.get(comm) or _COMM_GROUPS.get(p.cmdline.split(" ")[0].rsplit("/", 1)[-1], "other")

    def scope(self, p: Proc, procs: dict[int, Proc]) -> str:
        if self.netns_cgroup and self.netns_cgroup in p.cgroup:
            return "netns"
        if any(f"/{cid}" in p.cgroup or f"-{cid}" in p.cgroup for cid in self.docker_ids):
            return "docker"
        if self.group(p) in _ENGINE:
            return "engine"
        seen, pid = set(), p.pid
        while pid > 1 and pid not in seen:
            if pid in self.roots:
                return self.roots[pid]
            if pid == self.runner_pid and pid != p.pid:
                return "floor"
            seen.add(pid)
            parent = procs.get(pid)
            pid = parent.ppid if parent else 0
        return "other"


def _per_group(before: dict[int, Proc], after: dict[int, Proc], classifier: Classifier, amount) -> dict:
    """amount(start or None, end) of every process in `after`, summed per scope and group (positive only).

    `start` is None for a process born between the snapshots (or a pid reused by another program)."""
    per = defaultdict(lambda: defaultdict(int))
    for pid, end in after.items():
        start = before.get(pid)
        value = amount(start if start and start.comm == end.comm else None, end)
        if value > 0:
            per[classifier.scope(end, after)][classifier.group(end)] += value
    return {scope: dict(sorted(groups.items())) for scope, groups in sorted(per.items())}


def usage(before: dict[int, Proc], after: dict[int, Proc], classifier: Classifier) -> dict:
    """CPU-seconds per scope and group between two snapshots (processes born in between count fully)."""
    ticks = _per_group(
        before, after, classifier, lambda start, end: end.ticks - (start.ticks if start else 0)
    )
    return {scope: {g: round(t / TICKS, 3) for g, t in groups.items()} for scope, groups in ticks.items()}


def switches(before: dict[int, Proc], after: dict[int, Proc], classifier: Classifier) -> dict:
    """Context switches per scope and group between two snapshots (taken with threads=True), thread by
    thread (new threads count fully)."""

    def count(start: Proc | None, end: Proc) -> int:
        known = dict(start.switches) if start else {}
        return sum(n - known.get(tid, 0) for tid, n in end.switches)

    return _per_group(before, after, classifier, count)


class SwitchWindow:
    """Context switches between `start_s` and `end_s` seconds into a timed run, sampled in a thread.

    Only `pids` are read (the measured deployment's services and datastores): reading every thread of every
    process took 40-160 ms of CPU twice inside each run, and on 2 cores that alone added 10-23 ms to
    the p99 of the run it measured (paired wrk runs against the netns gateway)."""

    def __init__(self, classifier: Classifier, start_s: float, end_s: float, pids=None) -> None:
        self.classifier, self.start_s, self.end_s, self.pids = classifier, start_s, end_s, pids
        self._result: dict | None = None
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @classmethod
    def for_run(cls, classifier: Classifier, duration_s: float | None, pids=None) -> SwitchWindow | None:
        """The steady part of a run of `duration_s` (connections open, none closing yet); None: untimed."""
        if not duration_s or duration_s < 2:
            return None
        edge = min(0.5, duration_s / 4)
        return cls(classifier, edge, duration_s - edge, pids)

    def start(self) -> SwitchWindow:
        self._thread.start()
        return self

    def _sample(self) -> None:
        began = time.monotonic()
        time.sleep(self.start_s)
        first, t0 = snapshot(threads=True, pids=self.pids), time.monotonic()
        time.sleep(max(0.0, self.end_s - (t0 - began)))
        second, t1 = snapshot(threads=True, pids=self.pids), time.monotonic()
        self._result = {"seconds": round(t1 - t0, 3), "counts": switches(first, second, self.classifier)}

    def result(self, timeout_s: float = 10) -> dict | None:
        """{"seconds": window length, "counts": {scope: {group: n}}}, or None if sampling did not finish."""
        self._thread.join(timeout_s)
        return self._result
