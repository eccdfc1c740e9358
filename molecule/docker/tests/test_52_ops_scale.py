"""Scaling (playbooks/scale.yml) the docker lab in place while a request loop runs through the gateway's
published port (loopback, or the lab VM's address): no request fails, a new instance answers within
seconds, a removed one no longer does, and a bad count, or one whose PostgreSQL connection pools would
not fit in max_connections, is refused before anything changes."""

from __future__ import annotations

import time

import pytest
from conftest import docker, lab_containers
from labops import assert_scale_past_max_connections_refused
from opslib import RequestLoop, playbook, service_container, tail


def product_hostnames() -> set[str]:
    return {
        c["Config"]["Hostname"]
        for c in lab_containers()
        if c["Config"]["Labels"].get("org.shoplab.service") == "product" and c["State"]["Running"]
    }


def scale_under_load(gateway_url: str, count: int) -> tuple[RequestLoop, float]:
    with RequestLoop(f"{gateway_url}/api/products?per_page=5") as loop:
        result = playbook("scale.yml", "-e", f"product_instances={count}")
        done = time.monotonic()
        time.sleep(3)  # keep the loop running a little past the change
    assert result.returncode == 0, tail(result)
    print(f"scale to {count}: {loop.sent} requests, {len(loop.failures)} failed")
    assert loop.sent >= 200
    assert loop.failures == [], loop.failures[:5]
    assert len(product_hostnames()) == count
    return loop, done


@pytest.mark.parametrize("count", [2, 3, 2])
def test_scale_without_a_failed_request(gateway_url, count):
    before = product_hostnames()
    loop, done = scale_under_load(gateway_url, count)
    after = product_hostnames()
    answered_after = {name for when, name in loop.upstreams if when > done}
    for added in after - before:
        assert added in answered_after, f"new instance {added} never answered ({answered_after})"
    for removed in before - after:
        assert removed not in answered_after, f"removed instance {removed} still answered"


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_bad_count_is_refused_and_nothing_changes(value):
    before = product_hostnames()
    result = playbook("scale.yml", "-e", f"product_instances={value}")
    assert result.returncode != 0
    assert "product_instances must be a whole number >= 1" in result.stdout, tail(result)
    assert product_hostnames() == before


def test_count_past_max_connections_is_refused_naming_both_numbers(topology):
    """50 product instances, each of their workers with its own pool (topology.yml), are far past
    max_connections: the preflight refuses, naming the variable, the pools' total and PostgreSQL's live
    max_connections, and changes nothing."""
    before = sorted(c["Id"] for c in lab_containers())
    query = [
        "psql",
        "-U",
        topology["shoplab_db_user"],
        "-d",
        topology["shoplab_db_name"],
        "-tAc",
        "SHOW max_connections",
    ]
    max_connections = docker("exec", service_container("postgres"), *query).strip()
    assert_scale_past_max_connections_refused(playbook, topology, max_connections)
    assert sorted(c["Id"] for c in lab_containers()) == before
