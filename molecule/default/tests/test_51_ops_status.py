"""Status (playbooks/status.yml) on the netns lab: every section, no problem on a healthy lab, and a
stopped instance named (unit down, not registered) until it runs again (molecule/shared/labops.py
holds what the docker scenario checks the same way), and the services' own warnings."""

from __future__ import annotations

from labdata import instance
from labops import assert_status_complete_and_clean, assert_stopped_instance_named_then_clears
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
    assert_status_complete_and_clean(playbook, SECTIONS)


def test_a_stopped_instance_is_named_then_clears(lab):
    product = instance("product", 2)
    unit = f"shoplab-{product['name']}.service"
    assert_stopped_instance_named_then_clears(
        playbook,
        stop=lambda: lab.check(f"systemctl stop {unit}"),
        start=lambda: lab.check(f"systemctl start {unit}"),
        problems=[
            f"unit {unit} is inactive ({product['name']} is down)",
            f"nothing listens on port {product['port']} in {product['namespace']}",
            f"{product['name']} is not registered with the registry",
        ],
        named=product["name"],
        clear_within=60,
        pause=3,
    )


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
