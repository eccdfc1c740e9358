"""CPU per process group, from /proc/<pid>/stat (utime + stime), sampled at the start and end of a case.

Processes are sorted into a scope (which deployment they belong to) and a group (what they are):
  scope  floor   descendants of the benchmark runner (the loopback stack and nginx it started)
         netns   processes in the lab-host container's cgroup (or, on a systemd host, shoplab-* units)
         docker  processes of a container of the shoplab Compose project
         engine  docker-proxy, dockerd, containerd (the Docker engine's share of the work)
         other   everything else (other jobs on the machine: reported as a total, never attributed)
  group  gateway, product, order, registry (shoplab-serve/shoplab.serve <service>), redis, postgres,
         nginx, journald, docker-proxy, dockerd, containerd, other
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
_SERVE = re.compile(r"shoplab[.-]serve\s+(gateway|product|order|registry)\b")
_COMM_GROUPS = {
    "redis-server": "redis",
    "postgres": "postgres",
    "nginx": "nginx",
    "systemd-journal": "journald",
    "docker-proxy": "docker-proxy",
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


def read_proc(pid: int, proc: Path = Path("/proc")) -> Proc | None:
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
    return Proc(pid, int(fields[1]), comm, int(fields[11]) + int(fields[12]), cmdline, cgroup)


def snapshot(proc: Path = Path("/proc")) -> dict[int, Proc]:
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name), proc)
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
    roots: dict[int, str] = field(default_factory=dict)  # processes we started for a mode: pid -> scope

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


def usage(before: dict[int, Proc], after: dict[int, Proc], classifier: Classifier) -> dict:
    """CPU-seconds per scope and group between two snapshots (processes born in between count fully)."""
    per = defaultdict(lambda: defaultdict(float))
    for pid, end in after.items():
        start = before.get(pid)
        base = start.ticks if start and start.comm == end.comm else 0
        used = (end.ticks - base) / TICKS
        if used <= 0:
            continue
        per[classifier.scope(end, after)][classifier.group(end)] += used
    return {
        scope: {g: round(s, 3) for g, s in sorted(groups.items())} for scope, groups in sorted(per.items())
    }
