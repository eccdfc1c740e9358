"""The gateway's balancer against a real registry: round-robin order, ejection after repeated failures,
the return of an ejected instance once its time is up, and a success forgiving earlier failures."""

from __future__ import annotations

import ipaddress
import time

import pytest
from helpers import FAST_ENV, TOKENS
from shoplab.core.registry_client import Instance, RegistryClient
from shoplab.gateway.balancer import Balancer

EJECT_SECONDS = 0.5


@pytest.fixture
def balancer(servers) -> tuple[Balancer, list[Instance]]:
    registry = servers.start_service("registry", "registry-balancer", dict(FAST_ENV))
    client = RegistryClient(f"http://127.0.0.1:{registry.port}", token=TOKENS["SHOPLAB_REGISTRY_TOKEN"])
    instances = [Instance("product", f"product-{n}", "127.0.0.1", 41000 + n) for n in (1, 2, 3)]
    for instance in instances:
        client.register(instance)
    return Balancer(client, lookup_ttl=60, eject_after=3, eject_seconds=EJECT_SECONDS), instances


def first_choices(balancer: Balancer, count: int) -> list[str]:
    return [balancer.candidates("product")[0].instance_id for _ in range(count)]


def test_each_instance_comes_first_in_turn(balancer):
    balancer, _ = balancer
    assert sorted(first_choices(balancer, 6)) == ["product-1", "product-1", "product-2", "product-2",
                                                 "product-3", "product-3"]  # fmt: skip
    assert len(balancer.candidates("product")) == 3


def test_an_instance_failing_in_a_row_is_ejected_then_returns(balancer):
    balancer, instances = balancer
    doomed = instances[1]
    for _ in range(3):
        balancer.failed(doomed)
    for _ in range(6):
        assert doomed not in balancer.candidates("product")
    time.sleep(EJECT_SECONDS + 0.1)
    assert "product-2" in first_choices(balancer, 3)
    assert all(len(balancer.candidates("product")) == 3 for _ in range(3))


def test_a_success_forgives_earlier_failures(balancer):
    balancer, instances = balancer
    flaky = instances[0]
    for _ in range(2):
        balancer.failed(flaky)
    balancer.succeeded(flaky)
    for _ in range(2):
        balancer.failed(flaky)
    assert flaky in balancer.candidates("product")  # 2 + 2 failures, never 3 in a row
    balancer.failed(flaky)
    assert flaky not in balancer.candidates("product")


def test_with_every_instance_ejected_all_are_tried_still(balancer):
    balancer, instances = balancer
    for instance in instances:
        for _ in range(3):
            balancer.failed(instance)
    assert {i.instance_id for i in balancer.candidates("product")} == {"product-1", "product-2", "product-3"}


class ListedRegistry:
    """A registry client that lists whatever the test says (the registry itself refuses such entries)."""

    def __init__(self, addresses: list[str]):
        self.addresses = addresses

    def lookup(self, service: str) -> list[Instance]:
        return [Instance(service, f"i-{n}", address, 5001) for n, address in enumerate(self.addresses)]


def test_only_addresses_inside_the_allowed_networks_are_ever_candidates(caplog):
    listed = ["172.21.0.20", "10.0.0.5", "product.example", "172.21.0.21", "8.8.8.8", "::1"]
    allowed = (ipaddress.ip_network("172.21.0.0/24"),)
    balancer = Balancer(ListedRegistry(listed), 60, 3, 10, allowed_networks=allowed)
    seen = {i.address for _ in range(8) for i in balancer.candidates("product")}
    assert seen == {"172.21.0.20", "172.21.0.21"}
    refused = [r.getMessage() for r in caplog.records if "GATEWAY_ALLOWED_NETWORKS" in r.getMessage()]
    assert len(refused) == 4  # each named once, not on every look-up
