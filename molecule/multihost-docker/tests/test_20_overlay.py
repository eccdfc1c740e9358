"""One overlay network per tier, on the tier's subnet (the database's internal), encrypted when the lab
says so, and each service on exactly the tiers the flow data gives it."""

from __future__ import annotations

import json

import pytest
from swdata import ENCRYPTED, INSTANCES, MANAGER, NETWORKS, TIERS, swarm_service


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_each_tier_is_an_overlay_on_its_subnet(tier):
    spec = TIERS[tier]
    [network] = json.loads(MANAGER.check(f"docker network inspect {spec['docker_network']}"))
    assert network["Driver"] == "overlay" and network["Scope"] == "swarm"
    assert network["Internal"] is bool(spec["docker_internal"])
    assert [c["Subnet"] for c in network["IPAM"]["Config"]] == [spec["docker_subnet"]]
    assert ("encrypted" in (network.get("Options") or {})) is ENCRYPTED, network.get("Options")


@pytest.mark.parametrize("inst", INSTANCES, ids=[i["name"] for i in INSTANCES])
def test_each_service_joins_the_tiers_of_its_flows_only(inst):
    [service] = json.loads(MANAGER.check(f"docker service inspect {swarm_service(inst)}"))
    ids = [n["Target"] for n in service["Spec"]["TaskTemplate"].get("Networks", [])]
    names = {
        json.loads(MANAGER.check(f"docker network inspect {i}"))[0]["Name"] for i in ids
    }  # fmt: skip
    wanted = {TIERS[tier]["docker_network"] for tier in NETWORKS[inst["service"]]}
    assert names == wanted, f"{inst['name']} joins {sorted(names)}, the flows give it {sorted(wanted)}"
