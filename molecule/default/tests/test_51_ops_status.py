"""Status (playbooks/status.yml) on the netns lab: every section, no problem on a healthy lab, and a
stopped instance named (unit down, not registered) until it runs again, and the services' own warnings."""

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


def test_a_service_warning_is_shown_with_its_instance(lab):
    """The services' warnings are JSON lines on stderr (journal priority info): the report finds them."""
    lab.check("systemctl stop shoplab-redis.service")
    try:
        status, headers, _ = lab.http("GET", "/api/products/1")
        assert status == 200 and headers.get("x-cache") == "BYPASS"  # served from PostgreSQL
        result = playbook("status.yml")
    finally:
        lab.check("systemctl start shoplab-redis.service")
    assert result.returncode == 0, tail(result)
    section = result.stdout.partition("The services' warnings and errors")[2]
    line = next((line for line in section.split("\n") if "serving from PostgreSQL" in line), "")
    assert f" shoplab-{headers['x-upstream-instance']}[" in line, tail(result)  # SyslogIdentifier
    assert '"level":"warning"' in line and '"logger":"shoplab.cache"' in line, line
