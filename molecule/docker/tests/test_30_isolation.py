"""Isolation: no route out of the database tier, the lab's firewall in place, and the isolation matrix
(tiered layout): from every container and from the lab host to every instance's address:port, a TCP
connection opens exactly when the flow data allows it (k8s network-policy probe style), printed as a
matrix when a cell is wrong."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FILTERS, docker, probe_from, probe_from_host
from labhost import LAB

HOST = "host"


@pytest.fixture(autouse=True, scope="module")
def _tiered(topology):
    if topology.get("shoplab_docker_layout", "tiered") != "tiered":
        pytest.skip("the firewall and the isolation matrix apply to the tiered layout")


def test_no_route_out_of_the_database_tier(containers, topology):
    """The database network is `internal`: nothing on it is forwarded beyond its own subnet.

    Newer engines give its containers no default route at all; Debian's 20.10 keeps the route to the
    bridge but drops everything leaving the subnet (read from iptables, no packet is sent out)."""
    internal = [t for t in topology["shoplab_tiers"].values() if t["docker_internal"]]
    assert internal, "the topology has no internal network"
    rules = LAB.run("iptables", "-S").stdout
    for tier in internal:
        network = json.loads(docker("network", "inspect", tier["docker_network"]))[0]
        assert network["Internal"] is True
        bridge = f"br-{network['Id'][:12]}"
        dropped = f"! -d {tier['docker_subnet']} -i {bridge} -j DROP" in rules
        for container_id in network["Containers"]:
            routes = docker("exec", container_id, "cat", "/proc/net/route").splitlines()[1:]
            default = [line for line in routes if line.split()[1] == "00000000"]
            assert not default or dropped, f"{container_id[:12]} has a default route and nothing drops it"


def test_every_container_has_its_topology_addresses(containers, docker_instances, topology):
    """The firewall names addresses: every container holds exactly the ones the topology gives it."""
    tiers = topology["shoplab_tiers"]
    by_instance = {c["Config"]["Labels"]["org.shoplab.instance"]: c for c in containers}
    assert set(by_instance) == {i["name"] for i in docker_instances}
    for instance in docker_instances:
        networks = by_instance[instance["name"]]["NetworkSettings"]["Networks"]
        seen = {net: spec["IPAddress"] for net, spec in networks.items()}
        wanted = {tiers[t]["docker_network"]: a for t, a in instance["docker_addresses"].items()}
        assert seen == wanted, instance["name"]


def test_the_firewall_is_hooked_before_docker_decides():
    """Our chains sit first in DOCKER-USER (which FORWARD consults first), INPUT and OUTPUT, and bridged
    traffic passes iptables (without it, a network would be one open segment)."""
    rules = LAB.run("iptables", "-w", "-S", check=True).stdout
    lines = rules.splitlines()
    for chain, ours in (
        ("DOCKER-USER", "SHOPLAB-DOCKER-FORWARD"),
        ("INPUT", "SHOPLAB-DOCKER-INPUT"),
        ("OUTPUT", "SHOPLAB-DOCKER-OUTPUT"),
    ):
        jumps = [line for line in lines if line.startswith(f"-A {chain} ")]
        assert f"-A {chain} -j {ours}" in jumps, jumps
    assert "-A FORWARD -j DOCKER-USER" in lines
    assert LAB.read_file("/proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "1"
    check = LAB.run("/usr/local/sbin/shoplab-docker-firewall", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def _matrix(names: list[str], seen: dict[tuple[str, str], bool], expected: dict) -> str:
    """Sources down, targets across: '.' closed as expected, 'o' open as expected, 'X' wrong."""
    width = max(len(n) for n in names)
    lines = [" " * (width + 1) + " ".join(n[:9].rjust(9) for n in names[1:])]
    for source in names:
        marks = []
        for target in names[1:]:
            if source == target:
                marks.append("-".rjust(9))
            else:
                ok = seen[source, target] == expected[source, target]
                marks.append(("o" if seen[source, target] else ".") if ok else "X")
                marks[-1] = marks[-1].rjust(9)
        lines.append(source.ljust(width + 1) + " ".join(marks))
    return "\n".join(lines)


def test_isolation_matrix(containers, docker_instances, topology):
    """Every cell of shoplab_flow_matrix, observed by real connections; wrong cells are all reported."""
    services = topology["shoplab_services"]
    cells = FILTERS.shoplab_flow_matrix(docker_instances, services, topology["shoplab_allowed_flows"])
    expected = {(c["source"], c["target"]): c["allowed"] for c in cells}
    container = {c["Config"]["Labels"]["org.shoplab.instance"]: c["Name"].lstrip("/") for c in containers}
    # Every address of an instance, on every network it joins: open if any of them opens.
    endpoints = {
        i["name"]: [(a, i["port"]) for a in i["docker_addresses"].values()] for i in docker_instances
    }
    every = sorted({e for found in endpoints.values() for e in found})

    def observe(source: str) -> tuple[str, dict]:
        if source == HOST:
            return source, probe_from_host(every, topology)
        return source, probe_from(container[source], every)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        observed = dict(pool.map(observe, [HOST, *container]))
    seen = {
        (source, target): any(observed[source][e] for e in endpoints[target]) for source, target in expected
    }
    wrong = [
        f"{s} -> {t}: expected {'open' if expected[s, t] else 'closed'}"
        for (s, t) in expected
        if seen[s, t] != expected[s, t]
    ]
    names = [HOST, *[i["name"] for i in docker_instances]]
    print(f"isolation matrix: {len(expected)} cells, {len(wrong)} wrong, {time.monotonic() - started:.1f} s")
    print(_matrix(names, seen, expected))
    assert not wrong, (
        f"{len(wrong)} wrong cells of {len(expected)}:\n"
        + "\n".join(wrong)
        + "\n"
        + _matrix(names, seen, expected)
    )


def test_matrix_denies_something_and_allows_something_inside_one_network(docker_instances, topology):
    """Guard against a vacuous matrix: a pair sharing a network is closed, another open."""
    cells = FILTERS.shoplab_flow_matrix(
        docker_instances, topology["shoplab_services"], topology["shoplab_allowed_flows"]
    )
    by_name = {i["name"]: i for i in docker_instances}
    shared = [
        c
        for c in cells
        if c["source"] != HOST
        and set(by_name[c["source"]]["docker_addresses"]) & set(by_name[c["target"]]["docker_addresses"])
    ]
    assert any(c["allowed"] for c in shared)
    assert any(not c["allowed"] for c in shared)
