"""Placement: which lab host runs each instance when one lab spans several hosts (shoplab_placement)."""

from __future__ import annotations

import pytest
import shoplab_topology as topo

DATA = topo.load_topology()
SERVICES, TIERS, PLACEMENT = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_placement"]
VXLAN = DATA["shoplab_vxlan"]


def placed(hosts, products=2, orders=2, placement=PLACEMENT):
    counts = {"product_instances": products, "order_instances": orders}
    found = topo.shoplab_instances(SERVICES, TIERS, counts, placement, hosts)
    return {i["name"]: i["lab_host"] for i in found}


def test_one_host_runs_everything_whatever_the_placement_says():
    assert set(placed(1).values()) == {1}
    assert set(placed(1, placement={"gateway": 3, "redis": "last"}).values()) == {1}


def test_the_default_placement_over_three_hosts():
    # The default: gateway and registry on the first, product and order spread, datastores last.
    assert placed(3) == {
        "gateway": 1,
        "registry": 1,
        "product-1": 2,
        "product-2": 3,
        "order-1": 2,
        "order-2": 3,
        "redis": 3,
        "postgres": 3,
    }


@pytest.mark.parametrize("hosts", [2, 3, 4])
def test_every_host_runs_something_the_gateway_balances_over_or_the_gateway(hosts):
    where = placed(hosts, products=hosts, orders=1)
    balanced = {host for name, host in where.items() if name.startswith(("product-", "order-"))}
    assert balanced | {where["gateway"]} == set(range(1, hosts + 1))


def test_spread_deals_round_the_hosts_from_the_second():
    assert [topo.shoplab_place("spread", i, 3) for i in range(1, 7)] == [2, 3, 1, 2, 3, 1]
    assert [topo.shoplab_place("spread", i, 2) for i in range(1, 4)] == [2, 1, 2]


def test_datastores_share_a_host_as_netns_datastores_needs():
    where = placed(3)
    assert where["redis"] == where["postgres"]


@pytest.mark.parametrize(
    ("rule", "hosts", "message"),
    [
        ("everywhere", 3, "shoplab_placement.gateway must be one of first, last, spread"),
        (4, 3, "shoplab_placement.gateway: host 4, but the lab spans 3 hosts"),
        (0, 3, "shoplab_placement.gateway must be one of"),
        (True, 3, "shoplab_placement.gateway must be one of"),
    ],
)
def test_a_bad_placement_is_refused_naming_the_variable(rule, hosts, message):
    with pytest.raises(topo.PlacementError, match=message):
        topo.shoplab_place(rule, 1, hosts, "gateway")


def test_lab_members_form_labs_of_span_consecutive_hosts():
    hosts = ["vm-1", "vm-2", "vm-3", "vm-4", "vm-5", "vm-6"]
    assert topo.shoplab_lab_members(hosts, "vm-2", 1) == ["vm-2"]
    assert topo.shoplab_lab_members(hosts, "vm-2", "3") == ["vm-1", "vm-2", "vm-3"]
    assert topo.shoplab_lab_members(hosts, "vm-5", 3) == ["vm-4", "vm-5", "vm-6"]
    # A host outside group lab (the controller) is a lab of its own.
    assert topo.shoplab_lab_members(hosts, "localhost", 3) == ["localhost"]


@pytest.mark.parametrize(
    ("span", "message"),
    [(4, "group lab has 6 hosts, which do not form labs of 4"), (0, ">= 1"), ("three", ">= 1")],
)
def test_a_bad_span_is_refused_naming_the_variable(span, message):
    with pytest.raises(topo.PlacementError, match=f"shoplab_lab_span.*{message}"):
        topo.shoplab_lab_members([f"vm-{n}" for n in range(1, 7)], "vm-1", span)


def test_each_tier_has_its_own_vni_and_vxlan_device_names_fit_linux():
    vnis = [tier["vni"] for tier in TIERS.values()]
    assert len(set(vnis)) == len(vnis)
    assert all(1 <= vni < 2**24 for vni in vnis)
    for name in TIERS:
        assert len(VXLAN["device_prefix"] + name) <= 15


def test_the_lab_links_fit_the_underlay_after_vxlan():
    # Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14): a full inner packet must not fragment.
    assert VXLAN["overhead"] == 20 + 8 + 8 + 14
    assert VXLAN["underlay_mtu"] - VXLAN["overhead"] >= 1280


def test_lab_macs_are_locally_administered_and_unique():
    prefix = VXLAN["mac_prefix"]
    counts = {"product_instances": 19, "order_instances": 19}
    found = topo.shoplab_instances(SERVICES, TIERS, counts)
    macs = [topo.shoplab_instance_mac(i, TIERS, prefix) for i in found]
    macs += [topo.shoplab_gateway_mac(tier, prefix) for tier in TIERS.values()]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01, f"{mac}: locally administered, unicast"
    product = next(i for i in found if i["name"] == "product-1")  # 172.21.0.20
    backend_vni = TIERS["backend"]["vni"]
    assert topo.shoplab_instance_mac(product, TIERS, prefix) == f"{prefix}:{backend_vni:02x}:00:14"


def test_lab_problems_name_every_bad_value_at_once_as_the_preflight_says_them():
    assert topo.shoplab_lab_problems(PLACEMENT, 3, 3) == []
    assert topo.shoplab_lab_problems(PLACEMENT, "3", 6) == [], "an extra-var is a string of digits"
    assert topo.shoplab_lab_problems({"gateway": 4}, 1, 2) == [], "a lab of one host ignores a host number"
    problems = topo.shoplab_lab_problems({"gateway": 4, "registry": "everywhere", "redis": "last"}, 3, 3)
    assert problems == [
        "shoplab_placement.gateway: host 4, but the lab spans 3 hosts",
        "shoplab_placement.registry must be one of first, last, spread or a host number >= 1, "
        "got 'everywhere'",
    ]
    assert topo.shoplab_lab_problems(PLACEMENT, 2, 3) == [
        "shoplab_lab_span=2: group lab has 3 hosts, which do not form labs of 2 "
        "(LAB=vm: VMS, at most the VMs make vm booted)"
    ]
    assert topo.shoplab_lab_problems(PLACEMENT, "-1", 3) == [
        "shoplab_lab_span must be a whole number >= 1, got '-1'"
    ]
