"""A worker VM goes down (its QEMU killed, as a host failure): the shop keeps serving from the instances on
the other VMs; the registry forgets the lost ones after three missed heartbeats. Last: the scenario's
destroy removes every VM after it."""

from __future__ import annotations

import json
import subprocess
import time

from labtest import TIMEOUT_FACTOR
from mhdata import GATEWAY_VM, INSTANCES, host_of, instance

# A VM that runs neither the gateway and registry nor the datastores.
WORKERS = sorted(
    {host_of(i) for i in INSTANCES}
    - {host_of(instance(s)) for s in ("gateway", "registry", "redis", "postgres")}
)


def test_a_worker_vm_down_leaves_the_shop_serving():
    assert WORKERS, "the placement leaves a VM that only runs product and order instances"
    worker = WORKERS[0]
    lost = {i["name"] for i in INSTANCES if host_of(i) == worker}
    virsh = ["virsh", "--connect", "qemu:///system"]
    subprocess.run([*virsh, "destroy", worker], check=True, capture_output=True)
    deadline = time.monotonic() + 60 * TIMEOUT_FACTOR
    streak, served, last = 0, set(), None
    while streak < 10:
        assert time.monotonic() < deadline, f"the shop did not recover without {worker}: {last}"
        status, headers, body = GATEWAY_VM.http("GET", "/api/products")
        last = (status, body[:200])
        if status == 200:
            streak += 1
            served.add(headers.get("x-upstream-instance"))
        else:
            streak, served = 0, set()
            time.sleep(1)
    assert served and not served & lost, f"served by {served} after {worker} ({sorted(lost)}) went down"
    items = json.loads(GATEWAY_VM.http("GET", "/api/products")[2])["items"]
    product = next(p for p in items if p["stock"] > 0)
    status, headers, body = GATEWAY_VM.http(
        "POST", "/api/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}
    )
    assert status == 201, body
    assert headers.get("x-upstream-instance") not in lost
