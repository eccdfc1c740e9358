"""The three-host lab as its tests see it: the topology data placed over the scenario's lab VMs (through
the project's own filters, as the roles place it), and each VM reached over SSH."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import labhost
import yaml
from labtest import FILTERS, PROJECT_DIR, TCP_PROBE, TOPOLOGY, curl_command, parse_curl_response

# The scenario's lab VMs, host 1 first, and how many of them form the lab (molecule.yml).
HOSTS = labhost.lab_host_names("shoplab-vm-1")
SPAN = int(os.environ.get("SHOPLAB_LAB_SPAN", len(HOSTS)))
COUNTS = {"product_instances": TOPOLOGY["product_instances"], "order_instances": TOPOLOGY["order_instances"]}
SERVICES, TIERS = TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_tiers"]
INSTANCES = FILTERS.shoplab_instances(SERVICES, TIERS, COUNTS, TOPOLOGY["shoplab_placement"], SPAN)
MATRIX = FILTERS.shoplab_flow_matrix(INSTANCES, SERVICES, TOPOLOGY["shoplab_allowed_flows"])
VXLAN = TOPOLOGY["shoplab_vxlan"]
PUBLISHED_PORT = TOPOLOGY["shoplab_labhost_published_port"]
VM_BRIDGE = yaml.safe_load((PROJECT_DIR / "group_vars" / "all" / "lab_vms.yml").read_text())[
    "shoplab_vm_network"
]["bridge"]


def instance(service: str, index: int = 1) -> dict:
    return next(i for i in INSTANCES if i["service"] == service and i["index"] == index)


def host_of(inst: dict) -> str:
    """The lab VM that runs an instance (its placement)."""
    return HOSTS[inst["lab_host"] - 1]


class Vm:
    """One lab VM of the lab: a shell command over SSH (molecule/shared/labhost.py), its output."""

    def __init__(self, name: str):
        self.name = name
        self.host = labhost.LabHost(name, local=False)

    @property
    def address(self) -> str:
        return self.host.address

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.host.run("bash", "-c", command, timeout=timeout)

    def check(self, command: str, timeout: float = 120) -> str:
        done = self.run(command, timeout)
        failure = f"{command!r} on {self.name} failed ({done.returncode}): {done.stderr.strip()}"
        assert done.returncode == 0, failure
        return done.stdout

    def json(self, command: str):
        return json.loads(self.check(command))

    def probe(self, namespace: str | None, targets: list[tuple[str, int]], timeout: float) -> list[dict]:
        """TCP connections from a namespace of this VM (or the VM itself) to every target, in parallel:
        [{"ok", "seconds", "error"}], one per target, in order."""
        prefix = f"ip netns exec {shlex.quote(namespace)} " if namespace else ""
        cells = [[f"{address}:{port}", address, port] for address, port in targets]
        command = f"{prefix}python3 -c {shlex.quote(TCP_PROBE)} {shlex.quote(json.dumps(cells))} {timeout}"
        rows = self.json(command)
        return [{"ok": ok, "seconds": seconds, "error": detail} for _cell, ok, detail, seconds in rows]

    def http(self, method: str, path: str, body: dict | None = None, operator: bool = False):
        """One request to the gateway from this VM (it must run the gateway: the lab's tiers have the same
        gateway address on every host, so only the gateway's own host reaches it), after checking the route
        leaves through the gateway's bridge; (status, headers, body)."""
        gateway = instance("gateway")
        assert host_of(gateway) == self.name, f"the gateway runs on {host_of(gateway)}, not {self.name}"
        [route] = self.json(f"ip -j route get {shlex.quote(gateway['address'])}")
        assert route.get("dev") == gateway["bridge"], f"route to the gateway leaves via {route.get('dev')!r}"
        url = f"http://{gateway['address']}:{gateway['port']}{path}"
        return parse_curl_response(self.check(curl_command(url, method, body, operator, max_time=15)))


def assert_routed_to_a_lab_vm(address: str) -> None:
    """Traffic from this machine goes only to our own lab VMs: the route to address must leave through the
    lab VM network's bridge (group_vars/all/lab_vms.yml), not the default route."""
    route = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True, check=True)
    device = json.loads(route.stdout)[0]["dev"]
    assert device == VM_BRIDGE, f"route to {address} leaves via {device}, not {VM_BRIDGE}: refusing"


VMS = {name: Vm(name) for name in HOSTS}
GATEWAY_VM = VMS[host_of(instance("gateway"))]
