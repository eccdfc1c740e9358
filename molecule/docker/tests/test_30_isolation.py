"""Isolation: no route out of the database tier, and the isolation matrix (tiered layout): from every
container to every lab address:port, a TCP connection opens exactly when the flow data allows it."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FILTERS, by_service, docker

PROBE_TIMEOUT = 3


def test_no_route_out_of_the_database_tier(containers, topology):
    """The database network is `internal`: nothing on it is forwarded beyond its own subnet.

    Newer engines give its containers no default route at all; Debian's 20.10 keeps the route to the
    bridge but drops everything leaving the subnet (read from iptables, no packet is sent out)."""
    internal = [t for t in topology["shoplab_tiers"].values() if t["docker_internal"]]
    assert internal, "the topology has no internal network"
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=False).stdout
    for tier in internal:
        network = json.loads(docker("network", "inspect", tier["docker_network"]))[0]
        assert network["Internal"] is True
        bridge = f"br-{network['Id'][:12]}"
        dropped = f"! -d {tier['docker_subnet']} -i {bridge} -j DROP" in rules
        for container_id in network["Containers"]:
            routes = docker("exec", container_id, "cat", "/proc/net/route").splitlines()[1:]
            default = [line for line in routes if line.split()[1] == "00000000"]
            assert not default or dropped, f"{container_id[:12]} has a default route and nothing drops it"


def _addresses(container: dict) -> dict[str, str]:
    """Docker network name -> the container's address on it."""
    return {net: spec["IPAddress"] for net, spec in container["NetworkSettings"]["Networks"].items()}


def _assert_via_lab_bridge(address: str, lab_network_ids: dict[str, str]) -> None:
    """Refuse to probe an address whose route from this host does not use a bridge of the lab."""
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True, check=True).stdout
    bridges = {f"br-{network_id[:12]}" for network_id in lab_network_ids.values()}
    assert any(f"dev {bridge}" in route for bridge in bridges), f"{address} not behind a lab bridge: {route}"


def _probe_from(container: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    """Open a TCP connection to every target from inside `container`, in parallel, timeout 3 s each."""
    script = " ".join(
        f'( timeout {PROBE_TIMEOUT} bash -c "exec 3<>/dev/tcp/{addr}/{port}" 2>/dev/null'
        f' && echo "{addr}:{port} open" || echo "{addr}:{port} closed" ) &'
        for addr, port in targets
    )
    out = docker("exec", container, "bash", "-c", f"{script} wait", timeout=60)
    result = {}
    for line in out.splitlines():
        endpoint, state = line.split()
        addr, port = endpoint.rsplit(":", 1)
        result[(addr, int(port))] = state == "open"
    assert set(result) == set(targets), f"{container}: missing probe results"
    return result


def test_isolation_matrix(containers, instances, topology):
    """Every cell of shoplab_flow_matrix(mode='docker'), observed; all wrong cells are reported."""
    if topology.get("shoplab_docker_layout", "tiered") != "tiered":
        pytest.skip("the isolation matrix applies to the tiered layout")
    services = topology["shoplab_services"]
    expected = FILTERS.shoplab_flow_matrix(
        instances, services, topology["shoplab_allowed_flows"], mode="docker"
    )

    # Instance name (product-1, ...) -> its container, in container-number order.
    container_of = {}
    for service, group in by_service(containers).items():
        names = [i["name"] for i in instances if i["service"] == service]
        container_of.update(zip(names, group, strict=True))

    network_ids = {
        tier["docker_network"]: json.loads(docker("network", "inspect", tier["docker_network"]))[0]["Id"]
        for tier in topology["shoplab_tiers"].values()
    }
    targets = {}
    for instance in instances:
        port = services[instance["service"]]["port"]
        addresses = _addresses(container_of[instance["name"]])
        targets[instance["name"]] = [(net, addr, port) for net, addr in addresses.items()]
    for endpoints in targets.values():
        for _net, addr, _port in endpoints:
            assert ipaddress.ip_address(addr).is_private
            _assert_via_lab_bridge(addr, network_ids)

    every_target = sorted({(addr, port) for endpoints in targets.values() for _n, addr, port in endpoints})

    def observe(source: str) -> tuple[str, dict]:
        return source, _probe_from(container_of[source]["Name"].lstrip("/"), every_target)

    with ThreadPoolExecutor(max_workers=4) as pool:
        observed = dict(pool.map(observe, [i["name"] for i in instances]))

    published = {
        name: {int(port.split("/")[0]) for port, binds in c["NetworkSettings"]["Ports"].items() if binds}
        for name, c in container_of.items()
    }
    wrong = []
    for cell in expected:
        source, target = cell["source"], cell["target"]
        port = services[container_of[target]["Config"]["Labels"]["org.shoplab.service"]]["port"]
        if source == "host":
            # The host reaches the lab only through published ports (the gateway on localhost).
            seen = port in published[target]
            detail = f"published={sorted(published[target])}"
        else:
            opened = {net: observed[source][(addr, p)] for net, addr, p in targets[target]}
            shared = set(container_of[source]["NetworkSettings"]["Networks"])
            seen = any(opened.values())
            # Never open through a network the source is not on (Docker's inter-network isolation).
            leaks = [net for net, is_open in opened.items() if is_open and net not in shared]
            if leaks:
                seen = "leak"
            detail = f"open={opened}"
        if seen is not cell["allowed"]:
            wrong.append(f"{source} -> {target}:{port} expected {cell['allowed']} saw {seen} ({detail})")
    print(f"isolation matrix: {len(expected)} cells, {len(wrong)} wrong")
    assert wrong == [], "\n".join(wrong)
