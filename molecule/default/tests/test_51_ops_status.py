"""Status (playbooks/status.yml) on the netns lab: every section, no problem on a healthy lab, and a
stopped instance named (unit down, not registered) until it runs again."""

from __future__ import annotations

import time

from opsnetns import OPS_HOSTS, playbook, tail

testinfra_hosts = OPS_HOSTS

SECTIONS = [
    "Bridges and their ports",
    "Namespaces: addresses, routes, listening sockets",
    "iptables: the lab's chains with packet counters",
    "Connection tracking",
    "systemd units (systemctl show) and recent failures",
    "Registry contents",
]


def test_report_has_every_section_and_no_problem():
    result = playbook("status.yml", "-e", "lab_status_fail_on_problems=true")
    assert result.returncode == 0, tail(result)
    for section in SECTIONS:
        assert section in result.stdout, section
    assert "No problem found" in result.stdout
    assert "changed=0" in result.stdout


def test_a_stopped_instance_is_named_then_clears(lab):
    unit = "shoplab-product-2.service"
    lab.check(f"systemctl stop {unit}")
    try:
        result = playbook("status.yml")
        assert result.returncode == 0, tail(result)
        assert f"unit {unit} is inactive (product-2 is down)" in result.stdout, tail(result)
        assert "nothing listens on port 5001 in ns-product-2" in result.stdout
        assert "product-2 is not registered with the registry" in result.stdout
    finally:
        lab.check(f"systemctl start {unit}")
    deadline = time.monotonic() + 60
    while True:
        result = playbook("status.yml", "-e", "lab_status_fail_on_problems=true")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert result.returncode == 0, tail(result)
