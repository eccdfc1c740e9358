"""The lab survives a reboot: the boot-time oneshots rebuild rules, bridges, namespaces and veths."""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest
from labdata import INSTANCES, LAB_HOST_KIND, TESTINFRA_HOSTS, on_lab_host

testinfra_hosts = TESTINFRA_HOSTS

UNITS = ["shoplab-firewall.service", "shoplab-netns.service"]
UNITS += [f"shoplab-{i['name']}.service" for i in INSTANCES]


# A lab VM under TCG takes about a minute to boot; a container a few seconds.
BOOT_TIMEOUT = 120 if LAB_HOST_KIND == "container" else 600


def reboot(name: str) -> None:
    """A lab-host container restarts (a new network namespace, an empty /run, systemd boots again); a VM
    reboots, and SSH answers only once the old system is gone (its boot id changes)."""
    if LAB_HOST_KIND == "container":
        subprocess.run(["docker", "restart", name], check=True, capture_output=True, timeout=120)
        return
    boot_id = ["cat", "/proc/sys/kernel/random/boot_id"]
    before = subprocess.run(on_lab_host(name, *boot_id), capture_output=True, text=True, check=True).stdout
    # The connection drops as the VM goes down: ssh's own status says nothing then.
    subprocess.run(on_lab_host(name, "systemctl", "reboot"), capture_output=True, check=False, timeout=60)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        # Bounded: a connection made just as the VM goes down would wait for it forever.
        try:
            now = subprocess.run(on_lab_host(name, *boot_id), capture_output=True, text=True, timeout=30,
                                 check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            continue
        if now.returncode == 0 and now.stdout != before:
            return
        time.sleep(5)
    raise AssertionError(f"{name} did not come back within {BOOT_TIMEOUT} s")


@pytest.fixture(scope="module")
def rebooted(lab):
    reboot(lab.host.backend.hostname)
    deadline = time.monotonic() + BOOT_TIMEOUT
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
