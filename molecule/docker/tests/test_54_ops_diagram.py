"""The picture (playbooks/diagram.yml) of the docker lab: drawn from the live state as dot, SVG and
PNG, with no difference from the data, and a difference named when the data says otherwise."""

from __future__ import annotations

from conftest import lab_containers
from opslib import playbook, tail


def test_diagram_from_live_state_matches_the_data(tmp_path):
    result = playbook(
        "diagram.yml", "-e", f"lab_diagram_dir={tmp_path}", "-e", "lab_diagram_fail_on_differences=true"
    )
    assert result.returncode == 0, tail(result)
    assert "No difference: the running lab matches the data." in result.stdout
    svg = (tmp_path / "topology-docker.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert (tmp_path / "topology-docker.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = (tmp_path / "topology-docker.dot").read_text()
    for container in lab_containers():
        name = container["Name"].lstrip("/")
        assert name in dot, name
        for network in container["NetworkSettings"]["Networks"].values():
            assert network["IPAddress"] in dot, (name, network["IPAddress"])


def test_difference_from_the_data_is_flagged(tmp_path):
    # The data says three order instances; two run.
    extra = ("-e", f"lab_diagram_dir={tmp_path}", "-e", "order_instances=3")
    result = playbook("diagram.yml", *extra)
    assert result.returncode == 0, tail(result)
    assert "order: 2 container(s) run, the data says 3" in result.stdout, tail(result)
    failing = playbook("diagram.yml", *extra, "-e", "lab_diagram_fail_on_differences=true")
    assert failing.returncode != 0
    assert "The running lab differs from the data" in failing.stdout
