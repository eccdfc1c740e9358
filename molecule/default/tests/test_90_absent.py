"""Last: `state=absent` removes everything the lab created, and nothing else (runs the real playbook)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from labdata import INSTANCES, LAB_HOST_KIND, TESTINFRA_HOSTS, TIERS
from labtest import PROJECT_DIR, tail
from opsnetns import scenario_converge

testinfra_hosts = TESTINFRA_HOSTS

ADMIN_RULES = ["-A ADMIN-TEST -s 198.51.100.0/24 -j DROP", "-A FORWARD -j ADMIN-TEST"]


def ensure_admin_rules(lab):
    """The admin's rules (prepare.yml adds them; the reboot test's restart dropped them)."""
    lab.check("iptables -w -S ADMIN-TEST >/dev/null 2>&1 || iptables -w -N ADMIN-TEST")
    for rule in ADMIN_RULES:
        check = rule.replace("-A ", "-C ", 1)
        lab.check(f"iptables -w {check} 2>/dev/null || iptables -w {rule}")


@pytest.fixture(scope="module")
def forwarding_before(lab) -> str:
    """net.ipv4.ip_forward as the first deploy recorded it, before the lab turned it on (read before the
    removal, which deletes the record)."""
    return lab.check("cat /etc/shoplab/firewall/ip_forward.before").strip()


@pytest.fixture(scope="module")
def removed(lab, forwarding_before):
    """Run the scenario's converge playbook with state=absent once, against the same inventory."""
    ensure_admin_rules(lab)
    result = scenario_converge("-e", "state=absent")
    assert result.returncode == 0, tail(result)
    return result.stdout


def test_no_bridge_left(lab, removed):
    links = lab.check("ip -o link show").split("\n")
    for tier in TIERS.values():
        assert not [line for line in links if f" {tier['bridge']}:" in line]


def test_no_veth_or_namespace_left(lab, removed):
    links = lab.check("ip -o link show")
    namespaces = lab.check("ip netns list")
    for inst in INSTANCES:
        assert f" {inst['veth_host']}@" not in links and f" {inst['veth_host']}:" not in links
        assert inst["namespace"] not in namespaces
        assert not lab.host.file(f"/etc/netns/{inst['namespace']}").exists


def test_no_lab_chain_left_and_admin_rules_untouched(lab, removed):
    for command in ("iptables -S", "iptables -t nat -S", "ip6tables -S"):
        assert "SHOPLAB" not in lab.check(command), command
    rules = lab.check("iptables -S")
    for rule in ADMIN_RULES:
        assert rule in rules


# A lab VM's own units (roles/vm_image: its SSH host keys) are the VM's, not the lab's: they stay.
VM_IMAGE_UNITS = (
    yaml.safe_load((PROJECT_DIR / "roles" / "vm_image" / "vars" / "main.yml").read_text())["_vm_image_units"]
    if LAB_HOST_KIND == "vm"
    else []
)


def test_no_unit_left(lab, removed):
    listed = lab.check("systemctl list-units --all --plain --no-legend 'shoplab*'").splitlines()
    units = [line for line in listed if line.strip() and line.split()[0] not in VM_IMAGE_UNITS]
    assert not units, units
    files = lab.check("ls /etc/systemd/system").split()
    assert not [name for name in files if "shoplab" in name and name not in VM_IMAGE_UNITS], files


def test_no_listener_left(lab, removed):
    ports = {str(i["port"]) for i in INSTANCES}
    listeners = [line.split()[3] for line in lab.check("ss -Hltn").split("\n") if line.strip()]
    assert not [addr for addr in listeners if addr.rsplit(":", 1)[1] in ports], listeners


def test_no_files_left(lab, removed):
    for path in (
        "/etc/shoplab",
        "/opt/shoplab",
        "/var/lib/shoplab",
        "/var/lib/shoplab-logrotate",
        "/var/log/shoplab",
        "/usr/local/sbin/shoplab-netns",
        "/usr/local/sbin/shoplab-firewall",
        "/run/shoplab",
    ):
        assert not lab.host.file(path).exists, path
    assert not lab.host.user("shoplab").exists


def test_ip_forward_is_back_to_what_it_was_before_the_lab(lab, removed, forwarding_before):
    """The Molecule container (like make up's lab host) is created with net.ipv4.ip_forward=1: Docker sets
    it in the container's own network namespace before the lab exists, so 1 is what the first deploy
    recorded. The removal stopped the firewall's unit, which turned forwarding off; the removal must then
    have put the recorded value back."""
    scenario = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
    platforms = yaml.safe_load((scenario / "molecule.yml").read_text())["platforms"]
    created_with = {str(p.get("sysctls", {}).get("net.ipv4.ip_forward", "")) for p in platforms}
    if LAB_HOST_KIND == "vm":
        created_with = {"0"}  # the lab VM image sets no sysctl: a VM boots with the kernel's default
    assert created_with == {forwarding_before}, "the record is not the value the container was created with"
    assert lab.check("cat /proc/sys/net/ipv4/ip_forward").strip() == forwarding_before
