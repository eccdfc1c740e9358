"""Traffic capture (playbooks/capture.yml) on the netns lab's bridges: bounded, pcaps kept, a per-flow
summary through the three tiers, no tcpdump left running (molecule/shared/labops.py holds what the
docker scenario checks the same way)."""

from __future__ import annotations

from labops import assert_capture_shows_the_tiers, capture
from opsnetns import OPS_HOSTS, playbook

testinfra_hosts = OPS_HOSTS


def test_capture_shows_the_three_tiers(lab, tmp_path):
    result, folder, summary = capture(playbook, tmp_path, "netns")
    assert {p.stem for p in folder.glob("*.pcap")} == {"br-frontend", "br-backend", "br-database"}
    flows = [
        "host/host",
        "frontend/gateway",
        "backend/product-",
        "backend/registry",
        "database/postgres",
    ]
    assert_capture_shows_the_tiers(result, folder, summary, flows)
    assert lab.run("pgrep -x tcpdump").rc != 0, "a tcpdump is still running"
