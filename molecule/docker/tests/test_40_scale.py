"""Scaling the product service to three through the topology (playbooks/scale.yml): the new instance is a
Compose service of its own with its fixed addresses, the firewall lets it reach exactly what the flow
list says (real connections), the gateway reaches all three and they share one access log. Leaves
three instances: test_52_ops_scale.py scales back. (`docker compose up --scale` cannot give a replica
the fixed address the firewall names: the lab scales by rendering both from the topology.)"""

from __future__ import annotations

import json
import time

import labtest
import requests
from conftest import (
    FILTERS,
    access_lines,
    by_service,
    lab_containers,
    probe_from,
    probe_from_host,
    wait_healthy,
)
from opslib import playbook, tail


def test_scale_through_the_topology_to_three_and_round_robin(containers, gateway_url, topology):
    result = playbook("scale.yml", "-e", "product_instances=3")
    assert result.returncode == 0, tail(result)
    scaled = wait_healthy(len(containers) + 1)
    products = by_service(scaled)["product"]
    assert len(products) == 3
    wanted = {c["Config"]["Hostname"] for c in products}
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while seen != wanted and time.monotonic() < deadline:
        response = requests.get(f"{gateway_url}/api/products", timeout=10)
        assert response.status_code == 200
        seen.add(response.headers["X-Upstream-Instance"])
        time.sleep(0.2)
    assert seen == wanted
    # The three containers share product.access.log: each one's lines are there, whole.
    marker = labtest.unknown_product_path()
    for _ in range(12):
        assert requests.get(gateway_url + marker, timeout=10).status_code == 404
    deadline = time.monotonic() + 15
    while True:
        writers = {json.loads(line)["instance"] for line in access_lines("product", marker)}
        if writers == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert writers == wanted


def test_the_new_instance_has_its_addresses_and_exactly_its_flows(topology):
    """product-3 exists only since the scale: its rules came with it, rendered from the same list."""
    services, tiers, flows = (
        topology["shoplab_services"],
        topology["shoplab_tiers"],
        topology["shoplab_allowed_flows"],
    )
    counts = {"product_instances": 3, "order_instances": topology["order_instances"]}
    instances = FILTERS.shoplab_docker_instances(
        FILTERS.shoplab_instances(services, tiers, counts),
        services,
        tiers,
        flows,
        topology["shoplab_docker_guest_offset"],
    )
    by_name = {i["name"]: i for i in instances}
    containers = {c["Config"]["Labels"]["org.shoplab.instance"]: c for c in lab_containers()}
    new = by_name["product-3"]
    networks = containers["product-3"]["NetworkSettings"]["Networks"]
    assert {n: s["IPAddress"] for n, s in networks.items()} == {
        tiers[t]["docker_network"]: a for t, a in new["docker_addresses"].items()
    }
    cells = FILTERS.shoplab_flow_matrix(instances, services, flows)
    endpoints = {i["name"]: [(a, i["port"]) for a in i["docker_addresses"].values()] for i in instances}
    # From product-3 to everything, and from everything (the host included) to product-3.
    outgoing = probe_from(
        containers["product-3"]["Name"].lstrip("/"),
        sorted({e for n, found in endpoints.items() if n != "product-3" for e in found}),
    )
    incoming_host = probe_from_host(endpoints["product-3"], topology)
    wrong = []
    for cell in cells:
        if cell["source"] == "product-3":
            opened = any(outgoing[e] for e in endpoints[cell["target"]])
        elif cell["target"] == "product-3" and cell["source"] == "host":
            opened = any(incoming_host.values())
        elif cell["target"] == "product-3":
            found = probe_from(containers[cell["source"]]["Name"].lstrip("/"), endpoints["product-3"])
            opened = any(found.values())
        else:
            continue
        if opened != cell["allowed"]:
            wrong.append(f"{cell['source']} -> {cell['target']}: expected {cell['allowed']}, saw {opened}")
    assert wrong == []
    assert any(c["allowed"] for c in cells if c["source"] == "product-3")
