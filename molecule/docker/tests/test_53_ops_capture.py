"""Traffic capture (playbooks/capture.yml, scripts/monitor-traffic) on the docker lab's networks:
bounded by time and packet count, pcaps kept, a per-flow summary by tier, no tcpdump left running
(molecule/shared/labops.py holds what the netns scenario checks the same way)."""

from __future__ import annotations

import importlib.util
import os
import subprocess

from conftest import PROJECT_DIR
from labhost import LAB
from labops import assert_capture_shows_the_tiers, capture
from opslib import playbook, tail

spec = importlib.util.spec_from_file_location(
    "pcap_summary", PROJECT_DIR / "roles" / "lab_capture" / "files" / "pcap_summary.py"
)
pcap_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pcap_summary)


def tcpdumps_running() -> list[str]:
    """tcpdump processes on the lab host (where the capture runs them)."""
    found = LAB.run("pgrep", "-a", "-x", "tcpdump")
    assert found.returncode in (0, 1), f"pgrep on {LAB.name}: {found.stderr.strip()}"  # 1: none
    return found.stdout.splitlines()


def test_capture_shows_the_three_tiers(tmp_path):
    result, folder, summary = capture(playbook, tmp_path, "docker")
    assert {p.stem for p in folder.glob("*.pcap")} >= {"shoplab-backend", "shoplab-database"}
    # host -> gateway, gateway -> product/order/registry (backend), product/order -> redis/postgres (database)
    flows = [
        "backend/api-gateway-1",
        "backend/product-service-",
        "backend/service-registry-1",
        "database/postgres-1",
        "database/redis-1",
    ]
    assert_capture_shows_the_tiers(result, folder, summary, flows)
    assert tcpdumps_running() == []


def test_monitor_traffic_wrapper_bounded_by_packet_count():
    """scripts/monitor-traffic -c 5: every pcap holds at most 5 packets. The wrapper uses the project's
    configuration and its inventory; for a lab VM, ANSIBLE_INVENTORY (which outranks ansible.cfg) points it
    at the scenario's, as a user points it at inventory/vms.yml."""
    env = {**os.environ, "ANSIBLE_INVENTORY": LAB.inventory} if LAB.inventory else None
    result = subprocess.run(
        [str(PROJECT_DIR / "scripts" / "monitor-traffic"), "-m", "docker", "-s", "2", "-c", "5", "-r", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
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
