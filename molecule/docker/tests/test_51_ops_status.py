"""Status (playbooks/status.yml) against the docker lab: one report with every section, no problem on
a healthy lab, and a stopped instance named as a problem until it runs again."""

from __future__ import annotations

import time

from conftest import docker
from opslib import playbook, service_container, tail

SECTIONS = [
    "Docker networks and their containers",
    "Containers: state, health, addresses, routes, listening ports",
    "iptables: Docker's rules",
    "Connection tracking",
    "Recent failures",
    "Registry contents",
]


def wait_healthy(container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while docker("inspect", "-f", "{{.State.Health.Status}}", container).strip() != "healthy":
        assert time.monotonic() < deadline, f"{container} did not become healthy"
        time.sleep(2)


def test_report_has_every_section_and_no_problem():
    result = playbook("status.yml", "-e", "lab_status_fail_on_problems=true")
    assert result.returncode == 0, tail(result)
    for section in SECTIONS:
        assert section in result.stdout, section
    assert "No problem found" in result.stdout
    assert "changed=0" in result.stdout


def test_a_stopped_instance_is_named_then_clears():
    product = service_container("product")
    name = docker("inspect", "-f", "{{.Name}}", product).strip().lstrip("/")
    docker("stop", product)
    try:
        result = playbook("status.yml")
        assert result.returncode == 0, tail(result)
        assert f"container {name} (product) is exited" in result.stdout, tail(result)
        failing = playbook("status.yml", "-e", "lab_status_fail_on_problems=true")
        assert failing.returncode != 0
        assert name in failing.stdout
    finally:
        docker("start", product)
        wait_healthy(product)
    # Registered again after its first heartbeat.
    deadline = time.monotonic() + 30
    while True:
        result = playbook("status.yml", "-e", "lab_status_fail_on_problems=true")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert result.returncode == 0, tail(result)
