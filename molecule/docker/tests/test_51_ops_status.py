"""Status (playbooks/status.yml) against the docker lab: one report with every section, no problem on
a healthy lab, and a stopped instance named as a problem until it runs again (molecule/shared/labops.py
holds what the netns scenario checks the same way)."""

from __future__ import annotations

import time

from conftest import docker
from labops import assert_status_complete_and_clean, assert_stopped_instance_named_then_clears
from opslib import playbook, service_container

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
    assert_status_complete_and_clean(playbook, SECTIONS)


def test_a_stopped_instance_is_named_then_clears():
    product = service_container("product")
    name = docker("inspect", "-f", "{{.Name}}", product).strip().lstrip("/")

    def start() -> None:
        docker("start", product)
        wait_healthy(product)

    # Registered again after its first heartbeat.
    assert_stopped_instance_named_then_clears(
        playbook,
        stop=lambda: docker("stop", product),
        start=start,
        problems=[f"container {name} (product) is exited"],
        named=name,
        clear_within=30,
        pause=2,
    )
