"""The underlay: each tier one L2 segment over the VMs, by a VXLAN port per tier on every VM (its VNI,
this VM's address, unicast flooding to each peer), the same gateway address and MAC on every VM, and
every lab link's MTU lowered by VXLAN's overhead."""

from __future__ import annotations

import pytest
from mhdata import HOSTS, INSTANCES, TIERS, VMS, VXLAN, host_of

MTU = VXLAN["underlay_mtu"] - VXLAN["overhead"]


def link(name: str, device: str) -> dict:
    [found] = VMS[name].json(f"ip -d -j link show dev {device}")
    return found


@pytest.mark.parametrize("name", HOSTS)
@pytest.mark.parametrize("tier", list(TIERS))
def test_each_tier_bridge_has_a_vxlan_port_to_every_peer(name, tier):
    device = VXLAN["device_prefix"] + tier
    found = link(name, device)
    data = found["linkinfo"]["info_data"]
    assert found["linkinfo"]["info_kind"] == "vxlan"
    assert data["id"] == TIERS[tier]["vni"]
    assert data["local"] == VMS[name].address
    assert data["port"] == VXLAN["port"]
    assert found["master"] == TIERS[tier]["bridge"]
    assert found["mtu"] == MTU
    assert "UP" in found["flags"]
    flood = {
        entry["dst"]
        for entry in VMS[name].json(f"bridge -j fdb show dev {device}")
        if entry["mac"] == "00:00:00:00:00:00"
    }
    assert flood == {VMS[peer].address for peer in HOSTS if peer != name}


@pytest.mark.parametrize("tier", list(TIERS))
def test_the_tier_gateway_is_one_address_and_one_mac_on_every_vm(tier):
    bridge = TIERS[tier]["bridge"]
    seen = {}
    for name in HOSTS:
        found = link(name, bridge)
        [addr] = [a for a in VMS[name].json(f"ip -j -4 addr show dev {bridge}")[0]["addr_info"]]
        seen[name] = (found["address"], addr["local"], found["mtu"])
    assert len(set(seen.values())) == 1, seen
    mac, address, mtu = next(iter(seen.values()))
    assert address == TIERS[tier]["host_address"]
    assert mac.startswith("02:"), "a locally administered address"
    assert mtu == MTU


@pytest.mark.parametrize("name", HOSTS)
def test_every_namespace_link_fits_inside_vxlan(name):
    for inst in (i for i in INSTANCES if host_of(i) == name):
        [inside] = VMS[name].json(f"ip -n {inst['namespace']} -j link show dev eth0")
        assert inside["mtu"] == MTU, f"{inst['name']} on {name}: mtu {inside['mtu']}"


@pytest.mark.parametrize("name", HOSTS)
def test_the_underlay_to_each_peer_is_the_vm_network_not_a_lab_bridge(name):
    bridges = {t["bridge"] for t in TIERS.values()}
    for peer in HOSTS:
        if peer != name:
            [route] = VMS[name].json(f"ip -j route get {VMS[peer].address}")
            assert route["dev"] not in bridges and not route["dev"].startswith(VXLAN["device_prefix"])
