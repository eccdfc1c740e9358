"""Healing that happens whatever happens to the drill: on an exception, and after the playbook is killed.

roles/lab_drill heals every fault in an `always:` block, which runs when a task fails but not when
Ansible itself is stopped (Ctrl-C, a closed terminal, SIGKILL). So before each fault it arms a dead
man's switch: a detached process (its own session, so the terminal's Ctrl-C never reaches it) that
waits `after` seconds and then runs the heal command (`ansible-playbook playbooks/drill.yml -e
lab_drill_action=heal`, the same idempotent heal tasks as `make drill-heal`). The always block disarms
it after healing. Pumba's rule, made safe: every fault carries the command that undoes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

MARK = "shoplab_drill-deadman"
HOME = str(Path(__file__).resolve().parents[1])  # drills/, where the package is


@contextlib.contextmanager
def healing(heal: Callable[[], object]) -> Iterator[None]:
    """Run `heal` when the block ends, however it ends (an exception still propagates afterwards)."""
    try:
        yield
    finally:
        heal()


def arm(heal: Sequence[str], after_s: float, pidfile: Path, log: Path, cwd: str | None = None) -> int:
    """Start the switch; its pid (also written to `pidfile`). `heal` runs after `after_s` unless disarmed."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-m", "shoplab_drill.deadman", MARK, str(after_s), str(log), "--", *heal],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [HOME, os.environ.get("PYTHONPATH")]))},
    )
    pidfile.write_text(f"{child.pid}\n")
    return child.pid


def _is_switch(pid: int) -> bool:
    try:
        return MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def disarm(pidfile: Path) -> bool:
    """Stop the switch before it fires; True if one was waiting. Never kills anything but a switch."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    waiting = _is_switch(pid)
    if waiting:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
    return waiting


def _wait_then_heal(after_s: float, log: Path, heal: list[str]) -> int:
    # SIGTERM (disarm) before the deadline ends the wait quietly: the default action exits.
    time.sleep(after_s)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once healing, finish it
    with open(log, "a", buffering=1) as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} dead man's switch fired: {' '.join(heal)}\n")
        return subprocess.run(heal, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


if __name__ == "__main__":
    # python -m shoplab_drill.deadman shoplab_drill-deadman AFTER LOG -- HEAL...
    args = sys.argv[1:]
    if len(args) < 5 or args[0] != MARK or args[3] != "--":
        sys.exit("usage: python -m shoplab_drill.deadman shoplab_drill-deadman AFTER LOG -- HEAL...")
    sys.exit(_wait_then_heal(float(args[1]), Path(args[2]), args[4:]))
