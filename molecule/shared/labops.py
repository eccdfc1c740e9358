"""What both Molecule scenarios' status, scale and capture tests check (test_51_ops_status.py,
test_52_ops_scale.py, test_53_ops_capture.py): the same playbooks, the same reports. Each scenario
passes how it runs a playbook against its lab (`playbook(name, *extra)`) and its mode's parts: the
report's sections, how to stop and start an instance and what the report says then, the live
max_connections, the pcaps and flows to expect.

On pytest's pythonpath (the project's pyproject.toml), next to labtest.py.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from labtest import tail

Playbook = Callable[..., subprocess.CompletedProcess]

FAIL_ON_PROBLEMS = ("-e", "lab_status_fail_on_problems=true")
# The first four bytes of a pcap file, in either byte order.
PCAP_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")


def assert_status_complete_and_clean(playbook: Playbook, sections: Iterable[str]) -> None:
    """status.yml on a healthy lab: every section of the mode's report, no problem, nothing changed."""
    result = playbook("status.yml", *FAIL_ON_PROBLEMS)
    assert result.returncode == 0, tail(result)
    for section in sections:
        assert section in result.stdout, section
    assert "No problem found" in result.stdout
    assert "changed=0" in result.stdout


def assert_stopped_instance_named_then_clears(
    playbook: Playbook,
    *,
    stop: Callable[[], object],
    start: Callable[[], object],
    problems: Iterable[str],
    named: str,
    clear_within: float,
    pause: float,
) -> None:
    """With an instance stopped, status.yml still reports (rc 0) and names each of `problems`; with
    lab_status_fail_on_problems it fails naming `named`. Once started again (`start` returns when it
    runs), the report is clean within `clear_within` seconds (the instance registers again)."""
    stop()
    try:
        result = playbook("status.yml")
        assert result.returncode == 0, tail(result)
        for problem in problems:
            assert problem in result.stdout, tail(result)
        failing = playbook("status.yml", *FAIL_ON_PROBLEMS)
        assert failing.returncode != 0
        assert named in failing.stdout
    finally:
        start()
    deadline = time.monotonic() + clear_within
    while True:
        result = playbook("status.yml", *FAIL_ON_PROBLEMS)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(pause)
    assert result.returncode == 0, tail(result)


def capture(playbook: Playbook, folder: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path, str]:
    """capture.yml, 4 s and 10 requests, into `folder`: (the run, its capture folder, summary.txt)."""
    result = playbook(
        "capture.yml",
        "-e",
        f"lab_capture_dir={folder}",
        "-e",
        "lab_capture_seconds=4",
        "-e",
        "lab_capture_requests=10",
    )
    assert result.returncode == 0, tail(result)
    (captured,) = (folder / mode).iterdir()
    return result, captured, (captured / "summary.txt").read_text()


def assert_capture_shows_the_tiers(
    result: subprocess.CompletedProcess, captured: Path, summary: str, flows: Iterable[str]
) -> None:
    """Every pcap kept is a pcap file, the playbook prints the per-flow summary it keeps, and the summary
    holds each of `flows` (`tier/endpoint` names)."""
    for pcap in sorted(captured.glob("*.pcap")):
        assert pcap.read_bytes()[:4] in PCAP_MAGIC, pcap.name
    # Compared as words: labtest.playbook folds the output's spacing.
    first_flow = " ".join(summary.splitlines()[2].split())
    assert first_flow in result.stdout, first_flow
    for needle in flows:
        assert needle in summary, needle


def assert_scale_past_max_connections_refused(
    playbook: Playbook, topology: dict, max_connections: str, products: int = 50
) -> None:
    """`products` product instances, each worker with its own pool (topology.yml), are far past
    PostgreSQL's max_connections (`max_connections`: the live value, read by the scenario): the preflight
    refuses, naming the count, the pools' total and max_connections."""
    assert max_connections == str(topology["shoplab_postgres_max_connections"])
    pools = (
        (products + topology["order_instances"])
        * topology["shoplab_web_concurrency"]
        * topology["shoplab_db_pool_max"]
    )
    result = playbook("scale.yml", "-e", f"product_instances={products}")
    assert result.returncode != 0
    out = " ".join(result.stdout.split())  # the message, however the output wraps it
    assert f"product_instances={products}" in out, tail(result)
    assert f"need up to {pools} PostgreSQL connections" in out, tail(result)
    assert f"max_connections={max_connections}" in out, tail(result)
