"""A worker VM goes down (its QEMU killed, as a host failure): the shop keeps serving from the tasks on the
other VMs (the Swarm cannot move the lost ones: their constraints pin them to that VM; the registry forgets
them after three missed heartbeats). Last: the scenario's destroy removes every VM after it."""

from __future__ import annotations

from labtest import TIMEOUT_FACTOR
from labvms import WORKERS, served_after_losing
from swdata import INSTANCES, MANAGER, host_of


def test_a_worker_vm_down_leaves_the_shop_serving():
    assert WORKERS, "the placement leaves a VM that only runs product and order instances"
    worker = WORKERS[0]
    lost = {i["name"] for i in INSTANCES if host_of(i) == worker}
    served = served_after_losing(worker, MANAGER.http, 90 * TIMEOUT_FACTOR)
    assert served and not served & lost, f"served by {served} after {worker} ({sorted(lost)}) went down"
