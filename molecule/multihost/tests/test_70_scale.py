"""Scaling (playbooks/scale.yml) the lab over three VMs in place, under a request loop on the gateway's VM:
the third product instance goes where the placement puts it, every VM learns it (its VXLAN forwarding
entry and neighbour on the others, its firewall rules everywhere), it answers through the gateway, and
scaling back removes it from every VM; no request fails meanwhile."""

from __future__ import annotations

import labvms
import shoplab_topology as topo
from labtest import TOPOLOGY
from mhdata import GATEWAY_VM, HOSTS, VMS, VXLAN, instance

COUNTS = {"product_instances": 3, "order_instances": TOPOLOGY["order_instances"]}
# The third product instance, placed as the roles place it.
PRODUCT_3 = labvms.instance_at(COUNTS, "product-3")
PRODUCT_3_VM = VMS[HOSTS[PRODUCT_3["lab_host"] - 1]]
PRODUCT_3_MAC = topo.shoplab_instance_mac(PRODUCT_3, TOPOLOGY["shoplab_tiers"], VXLAN["mac_prefix"])


def scale_under_load(count: int) -> list[str]:
    """scale.yml to `count` product instances while the gateway's VM GETs products through the gateway
    (after checking the route leaves via the gateway's bridge); each status and upstream instance."""
    gateway = instance("gateway")
    [route] = GATEWAY_VM.json(f"ip -j route get {gateway['address']}")
    assert route.get("dev") == gateway["bridge"], f"the gateway's route leaves via {route.get('dev')!r}"
    url = f"http://{gateway['address']}:{gateway['port']}/api/products?per_page=5"
    return labvms.scale_under_load(GATEWAY_VM, url, "netns", count)


def test_scale_up_and_down_across_the_vms_without_a_failed_request():
    vx = f"{VXLAN['device_prefix']}{PRODUCT_3['tier']}"
    lines = scale_under_load(3)
    assert PRODUCT_3_VM.check(f"systemctl is-active shoplab-{PRODUCT_3['name']}.service").strip() == "active"
    for vm in VMS.values():
        namespaces = vm.check("ip netns list")
        assert (PRODUCT_3["namespace"] in namespaces) == (vm is PRODUCT_3_VM), vm.name
        rules = vm.check("iptables -w -S SHOPLAB-LAB")
        assert f'"gateway -> {PRODUCT_3["name"]}"' in rules, f"{vm.name} has no rule for it"
        if vm is not PRODUCT_3_VM:
            # Known from the data, not learned: a forwarding entry to its VM and a permanent neighbour.
            fdb = vm.check(f"bridge fdb show dev {vx}")
            assert f"{PRODUCT_3_MAC} dst {PRODUCT_3_VM.address}" in fdb, f"{vm.name}: {fdb}"
            neighbours = vm.check(f"ip neigh show {PRODUCT_3['address']}")
            assert PRODUCT_3_MAC in neighbours and "PERMANENT" in neighbours, f"{vm.name}: {neighbours}"
    assert any(line.endswith(f" {PRODUCT_3['name']}") for line in lines[-100:]), "product-3 never answered"

    lines = scale_under_load(TOPOLOGY["product_instances"])
    for vm in VMS.values():
        assert PRODUCT_3["namespace"] not in vm.check("ip netns list"), vm.name
        assert PRODUCT_3_MAC not in vm.check(f"bridge fdb show dev {vx}"), vm.name
        assert f'"gateway -> {PRODUCT_3["name"]}"' not in vm.check("iptables -w -S SHOPLAB-LAB"), vm.name
    assert not any(line.endswith(f" {PRODUCT_3['name']}") for line in lines[-30:]), "product-3 still answered"
