"""Traffic capture (playbooks/capture.yml, scripts/monitor-traffic) on the docker lab's networks:
bounded by time and packet count, pcaps kept, a per-flow summary by tier, no tcpdump left running."""

from __future__ import annotations

import importlib.util
import subprocess

from conftest import PROJECT_DIR
from opslib import playbook, tail

spec = importlib.util.spec_from_file_location(
    "pcap_summary", PROJECT_DIR / "roles" / "lab_capture" / "files" / "pcap_summary.py"
)
pcap_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pcap_summary)


def tcpdumps_running() -> list[str]:
    found = subprocess.run(["pgrep", "-a", "-x", "tcpdump"], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


def test_capture_shows_the_three_tiers(tmp_path):
    result = playbook(
        "capture.yml",
        "-e",
        f"lab_capture_dir={tmp_path}",
        "-e",
        "lab_capture_seconds=4",
        "-e",
        "lab_capture_requests=10",
    )
    assert result.returncode == 0, tail(result)
    (folder,) = (tmp_path / "docker").iterdir()
    pcaps = sorted(folder.glob("*.pcap"))
    assert {p.stem for p in pcaps} >= {"shoplab-backend", "shoplab-database"}
    for pcap in pcaps:
        assert pcap.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    summary = (folder / "summary.txt").read_text()
    # The playbook prints the summary: compare as words, as opslib.playbook folds the output's spacing.
    first_flow = " ".join(summary.splitlines()[2].split())
    assert first_flow in result.stdout, first_flow
    # host -> gateway, gateway -> product/order/registry (backend), product/order -> redis/postgres (database)
    for needle in (
        "backend/api-gateway-1",
        "backend/product-service-",
        "backend/service-registry-1",
        "database/postgres-1",
        "database/redis-1",
    ):
        assert needle in summary, needle
    assert tcpdumps_running() == []


def test_monitor_traffic_wrapper_bounded_by_packet_count():
    """scripts/monitor-traffic -c 5: every pcap holds at most 5 packets."""
    result = subprocess.run(
        [str(PROJECT_DIR / "scripts" / "monitor-traffic"), "-m", "docker", "-s", "2", "-c", "5", "-r", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Flows (packets and bytes are both directions" in result.stdout
    folder = max((PROJECT_DIR / "captures" / "docker").iterdir())
    for pcap in folder.glob("*.pcap"):
        assert len(list(pcap_summary.packets(pcap))) <= 5, pcap.name
    assert tcpdumps_running() == []


def test_unbounded_capture_is_refused():
    for extra in ("lab_capture_seconds=1000", "lab_capture_packets=0"):
        result = playbook("capture.yml", "-e", extra)
        assert result.returncode != 0
        assert "A capture must be bounded" in result.stdout, tail(result)
