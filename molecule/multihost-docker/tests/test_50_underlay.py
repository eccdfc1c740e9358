"""What crosses the VM network between the Swarm's nodes: with encryption (this scenario) the overlay's
frames only inside IPsec ESP, so a capture on a VM's card sees ESP between the VMs and neither VXLAN nor
a request of the shop in clear; and the overlay's port accepts only the lab's own VMs."""

from __future__ import annotations

import socket

from labvms import capture_during
from swdata import ENCRYPTED, HOSTS, MANAGER, SWARM, VMS, assert_routed_to_a_lab_vm, host_of, instance


def requests_through_the_gateway(count: int = 12):
    def traffic() -> None:
        for _ in range(count):
            assert MANAGER.http("GET", "/api/products")[0] == 200

    return traffic


def test_the_gateways_requests_reach_another_vm_encrypted():
    assert ENCRYPTED, "this scenario deploys encrypted overlays (molecule.yml)"
    vm = VMS[host_of(instance("product"))]
    assert vm is not MANAGER
    between = f"host {MANAGER.address} and host {vm.address}"
    out, packets = capture_during(vm, between, requests_through_the_gateway(), flags="-A")
    assert packets > 0
    assert "ESP(spi=" in out, "the overlay's traffic between the VMs travels in ESP"
    assert "/api/products" not in out, "a request of the shop crossed the VM network in clear"
    _, clear = capture_during(
        vm, f"{between} and udp port {SWARM['data_path_port']}", requests_through_the_gateway(4)
    )
    assert clear == 0, "VXLAN in clear between the VMs, though the overlays are encrypted"


def _drops(vm) -> int:
    rules = vm.check("iptables -w -nvxL SHOPLAB-SWARM-INPUT")
    # (iptables -n names the protocol by number here: 17 for udp.)
    data_port = f",{SWARM['data_path_port']}"
    [line] = [r for r in rules.splitlines() if " DROP " in r and "multiport dports" in r and data_port in r]
    return int(line.split()[0])


def test_vxlan_from_outside_the_lab_is_dropped():
    """This machine is on the VM network but not a node: a datagram it sends to a VM's overlay port meets
    the DROP that follows the peers' accepts (its counter rises)."""
    vm = VMS[HOSTS[-1]]
    assert_routed_to_a_lab_vm(vm.address)
    before = _drops(vm)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(
            b"\x08\x00\x00\x00\x00\x10\x00\x00" + b"\x00" * 14, (vm.address, SWARM["data_path_port"])
        )
    assert _drops(vm) > before
