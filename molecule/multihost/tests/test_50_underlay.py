"""What crosses the VM network: the lab's traffic between VMs only inside VXLAN (a capture on a VM's card
sees VXLAN with the tier's VNI and the lab's addresses inside, and never a lab address in an outer
header), and VXLAN accepted only from the lab's own VMs."""

from __future__ import annotations

import socket

from labvms import capture_during
from mhdata import GATEWAY_VM, HOSTS, TIERS, VMS, VXLAN, assert_routed_to_a_lab_vm, host_of, instance


def capture_during_requests(vm, expression: str, requests: int = 12) -> tuple[str, int]:
    """A capture on the VM's card while the gateway serves `requests` product lists."""

    def traffic() -> None:
        for _ in range(requests):
            assert GATEWAY_VM.http("GET", "/api/products")[0] == 200

    return capture_during(vm, expression, traffic)


def test_the_gateways_requests_reach_another_vm_inside_vxlan():
    product = instance("product")
    vm = VMS[host_of(product)]
    assert vm is not GATEWAY_VM
    out, packets = capture_during_requests(vm, f"udp port {VXLAN['port']}")
    assert packets > 0
    backend = TIERS[product["tier"]]["vni"]
    assert f"vni {backend}" in out, "the gateway's requests to the backend tier carry its VNI"
    assert f"{instance('gateway')['address']}." in out and f"{product['address']}.{product['port']}" in out


def test_no_lab_address_crosses_the_vm_network_in_clear():
    lab_nets = " or ".join(f"net {tier['subnet']}" for tier in TIERS.values())
    for name in HOSTS:
        out, packets = capture_during_requests(VMS[name], lab_nets, requests=4)
        assert packets == 0, f"{name}: lab packets outside VXLAN on the VM network:\n{out}"


def _vxlan_drops(vm) -> int:
    rules = vm.check("iptables -w -nvxL SHOPLAB-INPUT")
    [line] = [r for r in rules.splitlines() if "DROP" in r and f"udp dpt:{VXLAN['port']}" in r]
    return int(line.split()[0])


def test_vxlan_from_outside_the_lab_is_dropped():
    """This machine is on the VM network but not a host of the lab: a datagram it sends to a VM's VXLAN
    port meets the DROP that follows the peers' ACCEPTs (its counter rises)."""
    vm = VMS[HOSTS[-1]]
    assert_routed_to_a_lab_vm(vm.address)
    before = _vxlan_drops(vm)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"\x08\x00\x00\x00\x00\x00\x15\x00" + b"\x00" * 14, (vm.address, VXLAN["port"]))
    assert _vxlan_drops(vm) > before
