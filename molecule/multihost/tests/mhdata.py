"""The three-host lab as its tests see it: the topology data placed over the scenario's lab VMs (through
the project's own filters, as the roles place it), and each VM reached over SSH."""

from __future__ import annotations

import shlex

import labvms
from labtest import TOPOLOGY, curl_command, parse_curl_response
from labvms import HOSTS, INSTANCES, MATRIX, SPAN, TIERS, assert_routed_to_a_lab_vm, host_of, instance

__all__ = [
    "GATEWAY_VM", "HOSTS", "INSTANCES", "MATRIX", "PUBLISHED_PORT", "SPAN", "TIERS", "TOPOLOGY", "VMS",
    "VXLAN", "Vm", "assert_routed_to_a_lab_vm", "host_of", "instance",
]  # fmt: skip

VXLAN = TOPOLOGY["shoplab_vxlan"]
PUBLISHED_PORT = TOPOLOGY["shoplab_labhost_published_port"]


class Vm(labvms.Vm):
    """A lab VM of the netns lab: probes from its namespaces, requests to the gateway it may run."""

    def probe(self, namespace: str | None, targets: list[tuple[str, int]], timeout: float) -> list[dict]:
        """TCP connections from a namespace of this VM (or the VM itself) to every target, in parallel."""
        prefix = f"ip netns exec {shlex.quote(namespace)}" if namespace else ""
        return super().probe(prefix, targets, timeout)

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


VMS = {name: Vm(name) for name in HOSTS}
GATEWAY_VM = VMS[host_of(instance("gateway"))]
