"""The gateway's balancer against a real registry: round-robin order, ejection after repeated failures,
the return of an ejected instance once its time is up, and a success forgiving earlier failures."""

from __future__ import annotations

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
