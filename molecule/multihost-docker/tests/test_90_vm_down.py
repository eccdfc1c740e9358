"""A worker VM goes down (its QEMU killed, as a host failure): the shop keeps serving from the tasks on the
other VMs (the Swarm cannot move the lost ones: their constraints pin them to that VM; the registry forgets
them after three missed heartbeats). Last: the scenario's destroy removes every VM after it."""

from __future__ import annotations

import subprocess
import time

from labtest import TIMEOUT_FACTOR
from swdata import INSTANCES, MANAGER, host_of, instance

WORKERS = sorted(
    {host_of(i) for i in INSTANCES}
    - {host_of(instance(s)) for s in ("gateway", "registry", "redis", "postgres")}
)


def test_a_worker_vm_down_leaves_the_shop_serving():
    assert WORKERS, "the placement leaves a VM that only runs product and order instances"
    worker = WORKERS[0]
    lost = {i["name"] for i in INSTANCES if host_of(i) == worker}
    subprocess.run(
        ["virsh", "--connect", "qemu:///system", "destroy", worker], check=True, capture_output=True
    )
    deadline = time.monotonic() + 90 * TIMEOUT_FACTOR
    streak, served, last = 0, set(), None
    while streak < 10:
        assert time.monotonic() < deadline, f"the shop did not recover without {worker}: {last}"
        status, headers, body = MANAGER.http("GET", "/api/products")
        last = (status, body[:200])
        if status == 200:
            streak += 1
            served.add(headers.get("x-upstream-instance"))
        else:
            streak, served = 0, set()
            time.sleep(1)
    assert served and not served & lost, f"served by {served} after {worker} ({sorted(lost)}) went down"
