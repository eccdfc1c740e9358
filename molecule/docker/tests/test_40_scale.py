"""Scaling the product service by hand (`docker compose up --scale`): the gateway reaches every
instance and all of them share one access log. Leaves three instances: test_52_ops_scale.py scales back."""

from __future__ import annotations

import json
import subprocess
import time

import labtest
import requests
from conftest import COMPOSE_FILE, access_log, by_service, lab_containers


def test_scale_by_hand_to_three_and_round_robin(containers, gateway_url):
    """`docker compose up --scale product-service=3 -d` by hand; the gateway reaches all three."""
    subprocess.run(
        ["docker", "compose", "-f", COMPOSE_FILE, "up", "-d", "--wait", "--scale", "product-service=3"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    scaled = lab_containers()
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
        with open(access_log("product"), encoding="utf-8") as handle:
            writers = {json.loads(line)["instance"] for line in handle if marker in line}
        if writers == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert writers == wanted
