"""The picture (playbooks/diagram.yml) of the netns lab from its live state, and a flagged difference."""

from __future__ import annotations

from labdata import INSTANCES
from opsnetns import OPS_HOSTS, playbook, tail

testinfra_hosts = OPS_HOSTS


def test_diagram_matches_the_data(tmp_path):
    result = playbook(
        "diagram.yml", "-e", f"lab_diagram_dir={tmp_path}", "-e", "lab_diagram_fail_on_differences=true"
    )
    assert result.returncode == 0, tail(result)
    dot = (tmp_path / "topology-netns.dot").read_text()
    for inst in INSTANCES:
        assert inst["namespace"] in dot and inst["address"] in dot, inst["name"]
    assert (tmp_path / "topology-netns.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "topology-netns.svg").read_text()


def test_difference_is_flagged(tmp_path):
    result = playbook("diagram.yml", "-e", f"lab_diagram_dir={tmp_path}", "-e", "product_instances=3")
    assert result.returncode == 0, tail(result)
    assert "namespace ns-product-3 (product-3) is missing" in result.stdout, tail(result)
    assert "allowed flow gateway -> product-3 has no firewall rule" in result.stdout
