"""What the two lab status collectors (status_netns.py, status_docker.py) share.

roles/lab_status copies this file beside the collector it runs on the lab host. A collector's report
sections are functions that take a `run` function (argv in; return code and output out) and a
`Report` to add to, so that tests can feed them recorded command outputs.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

# A command runner: run("ip", "-j", "addr") -> (return code, stdout, or stdout + stderr on failure).
Run = Callable[..., tuple[int, str]]

CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"


def run(*argv: str, timeout: float = 10) -> tuple[int, str]:
    """Run a command without a shell: its return code, and its stdout (with stderr when it failed)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)


def run_json(run: Run, *argv: str):
    """A command's JSON output, or [] when it fails or prints nothing that parses."""
    rc, out = run(*argv)
    if rc != 0 or not out.strip():
        return []
    try:
        return json.loads(out)
    except ValueError:
        return []


def read_expected(argument: str) -> dict:
    """The collector's one argument: the expected topology as base64 JSON."""
    return json.loads(base64.b64decode(argument))


def main(collect: Callable[[Run, dict], Report], timeout: float = 10) -> None:
    """A collector's entry point: its report on the expected topology (its one argument) as one JSON document,
    each command it runs given `timeout` seconds."""
    print(collect(functools.partial(run, timeout=timeout), read_expected(sys.argv[1])).to_json())


def conntrack_count(run: Run) -> str:
    """The host's tracked connections (conntrack -C), or `unknown`."""
    rc, count = run("cat", CONNTRACK_COUNT)
    return count.strip() if rc == 0 else "unknown"


def registry_lines(listed: dict, id_width: int, registry: dict) -> list[str]:
    """The registry's answer (`services` of GET /services) as one line per instance; records each
    service's instance ids in `registry` (the live state's `registry`)."""
    lines = []
    for service, entries in sorted(listed.items()):
        registry[service] = sorted(e["instance_id"] for e in entries)
        for e in entries:
            lines.append(
                f"{service:<8} {e['instance_id']:<{id_width}} {e['address']}:{e['port']}"
                f"  heartbeat {e['last_heartbeat_seconds_ago']:.1f}s ago"
            )
    return lines


@dataclass
class Report:
    """What a collector prints: titled sections, problems, notes and the structured live state."""

    state: dict
    sections: list[list[str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def section(self, title: str, body: str) -> None:
        self.sections.append([title, body])

    def to_json(self) -> str:
        return json.dumps(
            {"sections": self.sections, "problems": self.problems, "notes": self.notes, "state": self.state}
        )
