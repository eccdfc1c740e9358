"""Scaling (playbooks/scale.yml) the netns lab in place under a request loop run inside the lab host:
no request fails, the new instance answers, the removed one is gone (namespace, veth, unit), and a
bad count, or one whose PostgreSQL connection pools would not fit in max_connections, is refused before
anything changes."""

from __future__ import annotations

from labdata import TOPOLOGY
from labops import assert_scale_past_max_connections_refused
from opsnetns import OPS_HOSTS, playbook, start_request_loop, stop_request_loop, tail

testinfra_hosts = OPS_HOSTS


def scale_under_load(lab, count: int) -> list[str]:
    loop = start_request_loop(lab)
    try:
        result = playbook("scale.yml", "-e", f"product_instances={count}")
        # A few seconds more of requests after the change.
        lab.check("sleep 3")
    finally:
        lines = stop_request_loop(loop)
    assert result.returncode == 0, tail(result)
    failed = [line for line in lines if not line.startswith("200 ")]
    print(f"scale to {count}: {len(lines)} requests, {len(failed)} failed")
    assert len(lines) >= 200
    assert failed == [], failed[:5]
    return lines


def test_scale_up_and_down_without_a_failed_request(lab):
    lines = scale_under_load(lab, 3)
    assert "ns-product-3" in lab.check("ip netns list")
    assert lab.check("systemctl is-active shoplab-product-3.service").strip() == "active"
    assert any(line.endswith(" product-3") for line in lines[-100:]), "product-3 never answered"

    lines = scale_under_load(lab, 2)
    assert "ns-product-3" not in lab.check("ip netns list")
    assert "ve-product-3" not in lab.check("ip -o link show")
    assert lab.run("systemctl is-active shoplab-product-3.service").stdout.strip() != "active"
    assert not any(line.endswith(" product-3") for line in lines[-30:]), "product-3 still answered"


def test_bad_count_is_refused(lab):
    namespaces = lab.check("ip netns list")
    result = playbook("scale.yml", "-e", "product_instances=-1")
    assert result.returncode != 0
    assert "product_instances must be a whole number >= 1" in result.stdout, tail(result)
    assert lab.check("ip netns list") == namespaces


def test_count_past_max_connections_is_refused_naming_both_numbers(lab):
    """50 product instances, each of their workers with its own pool (topology.yml), are far past
    max_connections: the preflight refuses, naming the variable, the pools' total and PostgreSQL's live
    max_connections, and changes nothing."""
    namespaces = lab.check("ip netns list")
    units = lab.check("systemctl list-units --all --plain --no-legend 'shoplab-product-*'")
    psql = (
        f"/usr/lib/postgresql/{TOPOLOGY['shoplab_netns_postgres_version']}/bin/psql"
        f" -h {TOPOLOGY['shoplab_netns_postgres_socket_dir']} -U postgres -d postgres"
    )
    max_connections = lab.check(f"{psql} -tAc 'SHOW max_connections'").strip()
    assert_scale_past_max_connections_refused(playbook, TOPOLOGY, max_connections)
    assert lab.check("ip netns list") == namespaces
    assert lab.check("systemctl list-units --all --plain --no-legend 'shoplab-product-*'") == units
