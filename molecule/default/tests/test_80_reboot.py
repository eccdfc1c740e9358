"""The lab survives a reboot: the boot-time oneshots rebuild rules, bridges, namespaces and veths."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest
from labdata import INSTANCES, TESTINFRA_HOSTS

testinfra_hosts = TESTINFRA_HOSTS

UNITS = ["shoplab-firewall.service", "shoplab-netns.service"]
UNITS += [f"shoplab-{i['name']}.service" for i in INSTANCES]


@pytest.fixture(scope="module")
def rebooted(lab):
    """Restart the lab-host container: a new network namespace, an empty /run, systemd boots again."""
    name = lab.host.backend.name
    subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        state = lab.run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(2)
    return state


def test_system_booted(rebooted):
    assert rebooted == "running"


def test_units_active_after_reboot(lab, rebooted):
    for _ in range(30):
        inactive = [u for u in UNITS if lab.run(f"systemctl is-active {u}").stdout.strip() != "active"]
        if not inactive:
            break
        time.sleep(2)
    assert not inactive


def test_gateway_answers_after_reboot(lab, rebooted):
    for _ in range(30):
        status = None
        with contextlib.suppress(AssertionError):
            status, _, _ = lab.http("GET", "/api/products")
        if status == 200:
            break
        time.sleep(2)
    assert status == 200


def test_firewall_back_after_reboot(lab, rebooted):
    assert lab.run("shoplab-firewall check").rc == 0
    assert lab.run("shoplab-netns check").rc == 0
