"""A worker VM goes down (its QEMU killed, as a host failure): the shop keeps serving from the instances on
the other VMs; the registry forgets the lost ones after three missed heartbeats. Last: the scenario's
destroy removes every VM after it."""

from __future__ import annotations

import json

from labtest import TIMEOUT_FACTOR
from labvms import WORKERS, served_after_losing
from mhdata import GATEWAY_VM, INSTANCES, host_of


def test_a_worker_vm_down_leaves_the_shop_serving():
    assert WORKERS, "the placement leaves a VM that only runs product and order instances"
    worker = WORKERS[0]
    lost = {i["name"] for i in INSTANCES if host_of(i) == worker}
    served = served_after_losing(worker, GATEWAY_VM.http, 60 * TIMEOUT_FACTOR)
    assert served and not served & lost, f"served by {served} after {worker} ({sorted(lost)}) went down"
    items = json.loads(GATEWAY_VM.http("GET", "/api/products")[2])["items"]
    product = next(p for p in items if p["stock"] > 0)
    status, headers, body = GATEWAY_VM.http(
        "POST", "/api/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}
    )
    assert status == 201, body
    assert headers.get("x-upstream-instance") not in lost
