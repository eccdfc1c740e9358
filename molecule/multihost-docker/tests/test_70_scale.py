"""Scaling (playbooks/scale.yml) the Swarm lab over three VMs in place, under a request loop through the
manager's published port (the routing mesh): the stack gets a service for the third product instance,
whose task runs on the VM its placement names and answers through the gateway; scaling back removes the
service and its task; no request fails meanwhile."""

from __future__ import annotations

import labvms
from labtest import TOPOLOGY
from swdata import GATEWAY, HOSTS, MANAGER, STACK, VMS, swarm_service

COUNTS = {"product_instances": 3, "order_instances": TOPOLOGY["order_instances"]}
# The third product instance, placed as the roles place it.
PRODUCT_3 = labvms.instance_at(COUNTS, "product-3")
PRODUCT_3_VM = VMS[HOSTS[PRODUCT_3["lab_host"] - 1]]


def scale_under_load(count: int) -> list[str]:
    """scale.yml to `count` product instances while the manager GETs products through its published port
    on loopback; each status and upstream instance."""
    url = f"http://127.0.0.1:{GATEWAY['port']}/api/products?per_page=5"
    return labvms.scale_under_load(MANAGER, url, "docker", count)


def running_tasks(vm, service: str) -> list[str]:
    """The running containers of a Swarm service's tasks on one VM."""
    return vm.check(
        f"docker ps -q --filter status=running --filter label=com.docker.swarm.service.name={service}"
    ).split()


def test_scale_up_and_down_across_the_swarm_without_a_failed_request():
    service = swarm_service(PRODUCT_3)
    lines = scale_under_load(3)
    services = MANAGER.check(
        f"docker service ls --filter label=com.docker.stack.namespace={STACK} --format '{{{{.Name}}}}'"
    )
    assert service in services.split()
    for vm in VMS.values():
        assert bool(running_tasks(vm, service)) == (vm is PRODUCT_3_VM), vm.name
    assert any(line.endswith(f" {PRODUCT_3['name']}") for line in lines[-100:]), "product-3 never answered"

    lines = scale_under_load(TOPOLOGY["product_instances"])
    services = MANAGER.check(
        f"docker service ls --filter label=com.docker.stack.namespace={STACK} --format '{{{{.Name}}}}'"
    )
    assert service not in services.split()
    for vm in VMS.values():
        assert running_tasks(vm, service) == [], vm.name
    assert not any(line.endswith(f" {PRODUCT_3['name']}") for line in lines[-30:]), "product-3 still answered"
