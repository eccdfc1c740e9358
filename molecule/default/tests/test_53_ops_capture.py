"""Traffic capture (playbooks/capture.yml) on the netns lab's bridges: bounded, pcaps kept, a per-flow
summary through the three tiers, no tcpdump left running."""

from __future__ import annotations

from opsnetns import OPS_HOSTS, playbook, tail

testinfra_hosts = OPS_HOSTS


def test_capture_shows_the_three_tiers(lab, tmp_path):
    extra = (
        "-e",
        f"lab_capture_dir={tmp_path}",
        "-e",
        "lab_capture_seconds=4",
        "-e",
        "lab_capture_requests=10",
    )
    result = playbook("capture.yml", *extra)
    assert result.returncode == 0, tail(result)
    (folder,) = (tmp_path / "netns").iterdir()
    assert {p.stem for p in folder.glob("*.pcap")} == {"br-frontend", "br-backend", "br-database"}
    summary = (folder / "summary.txt").read_text()
    for needle in (
        "host/host",
        "frontend/gateway",
        "backend/product-",
        "backend/registry",
        "database/postgres",
    ):
        assert needle in summary, needle
    assert lab.run("pgrep -x tcpdump").rc != 0, "a tcpdump is still running"
