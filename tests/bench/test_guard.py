"""The route guard's decision, on real `ip route get` outputs (fixtures/ip_route_get.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shoplab_topology
from shoplab_bench import guard
from shoplab_bench.guard import Lab, decide, parse_route

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROUTES = json.loads((FIXTURES / "ip_route_get.json").read_text())
TOPOLOGY = shoplab_topology.load_topology()
TIERS = TOPOLOGY["shoplab_tiers"].values()

LOOPBACK_ONLY = Lab.of([], [])
NETNS_HOST = Lab.of(
    [t["bridge"] for t in TIERS] + ["ve-gateway", "ve-product-1"], [t["subnet"] for t in TIERS]
)
NETNS_INSIDE_GATEWAY = Lab.of(["eth0"], [t["subnet"] for t in TIERS], [t["host_address"] for t in TIERS])
DOCKER = Lab.of(
    ["br-49bd975add42", "br-a551836f6bc4", "br-c8549dfcb3c3"], [t["docker_subnet"] for t in TIERS]
)


def test_parse_a_bridge_route():
    route = parse_route(ROUTES["labhost_gateway"])
    assert route == guard.Route("172.20.0.10", "br-frontend", None, "172.20.0.1", "unicast")


def test_parse_a_local_route_and_a_gateway():
    assert parse_route(ROUTES["host_loopback"]).kind == "local"
    assert parse_route(ROUTES["ns_gateway_product"]).via == "172.20.0.1"


def test_parse_refuses_empty_output():
    with pytest.raises(ValueError):
        parse_route("\n")


@pytest.mark.parametrize(
    ("route", "lab"),
    [
        ("host_loopback", LOOPBACK_ONLY),
        ("labhost_loopback", NETNS_HOST),
        ("labhost_gateway", NETNS_HOST),
        ("labhost_product", NETNS_HOST),
        ("ns_gateway_product", NETNS_INSIDE_GATEWAY),
        ("host_docker_backend", DOCKER),
    ],
)
def test_allowed(route, lab):
    assert decide(parse_route(ROUTES[route]), lab) is None


@pytest.mark.parametrize(
    ("route", "lab", "reason"),
    [
        # The netns lab address from the machine itself (the lab is inside the container): default route.
        ("host_netns_gateway_default_route", NETNS_HOST, "leaves through eth0 via 192.0.2.1"),
        ("host_public", DOCKER, "not a lab bridge"),
        ("labhost_public", NETNS_HOST, "leaves through eth0"),
        # docker mode's subnet seen from the netns lab host: out through its default route.
        ("labhost_docker_subnet", DOCKER, "leaves through eth0"),
        # Inside a namespace every route uses eth0: only lab subnets count.
        ("ns_gateway_public", NETNS_INSIDE_GATEWAY, "not in a lab subnet"),
        # A bridge that is not one of this lab's (docker bridge, but the netns lab's devices).
        ("host_docker_backend", NETNS_HOST, "not a lab bridge"),
    ],
)
def test_refused(route, lab, reason):
    refusal = decide(parse_route(ROUTES[route]), lab)
    assert refusal is not None
    assert reason in refusal


def test_refused_when_the_next_hop_is_not_a_lab_bridge():
    route = guard.Route("172.21.0.20", "eth0", "172.20.0.254", "172.20.0.10", "unicast")
    assert "not a lab bridge address" in decide(route, NETNS_INSIDE_GATEWAY)


def test_loopback_address_routed_elsewhere_is_refused():
    route = guard.Route("127.0.0.1", "eth0", None, None, "unicast")
    assert decide(route, NETNS_HOST) is not None


def test_check_asks_the_kernel_and_refuses_the_default_route():
    # 192.0.2.123 (TEST-NET-1) is not a lab address: whatever this machine's routes, it must be refused.
    with pytest.raises(guard.RouteRefused):
        guard.check("192.0.2.123", NETNS_HOST)
    assert guard.check("127.0.0.1", LOOPBACK_ONLY).device == "lo"
