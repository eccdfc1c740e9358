"""Scaling (playbooks/scale.yml) the Swarm lab over three VMs in place, under a request loop through the
manager's published port (the routing mesh): the stack gets a service for the third product instance,
whose task runs on the VM its placement names and answers through the gateway; scaling back removes the
service and its task; no request fails meanwhile."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import labtest
import shoplab_topology as topo
from labtest import TOPOLOGY, tail
from labvms import SPAN
from swdata import ENCRYPTED, GATEWAY, HOSTS, MANAGER, STACK, VMS, swarm_service

COUNTS = {"product_instances": 3, "order_instances": TOPOLOGY["order_instances"]}
# The third product instance, placed by the project's own filter as the roles place it.
PRODUCT_3 = next(
    i
    for i in topo.shoplab_instances(
        TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_tiers"], COUNTS, TOPOLOGY["shoplab_placement"], SPAN
    )
    if i["name"] == "product-3"
)
PRODUCT_3_VM = VMS[HOSTS[PRODUCT_3["lab_host"] - 1]]


def playbook(*extra: str) -> subprocess.CompletedProcess:
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    build = f"shoplab_build_dir={labtest.PROJECT_DIR / 'build'}"
    encrypted = f"shoplab_swarm_encrypted={str(ENCRYPTED).lower()}"
    return labtest.playbook(
        "playbooks/scale.yml",
        "docker",
        "-e",
        f"shoplab_lab_span={SPAN}",
        "-e",
        build,
        "-e",
        encrypted,
        *extra,
        inventory=inventory,
    )


def scale_under_load(count: int) -> list[str]:
    """scale.yml to `count` product instances while the manager GETs products through its published port
    on loopback; each status and upstream instance."""
    url = f"http://127.0.0.1:{GATEWAY['port']}/api/products?per_page=5"
    stop = f"/tmp/shoplab-scale-loop-{uuid.uuid4().hex[:8]}.stop"
    loop = (
        f"i=0; while [ $i -lt 20000 ] && [ ! -e {stop} ]; do i=$((i+1));"
        f" curl -s -o /dev/null -m 5 -w '%{{http_code}} %header{{x-upstream-instance}}\\n' {shlex.quote(url)}"
        " || echo curl-failed; sleep 0.1; done"
    )
    argv = MANAGER.host.argv("timeout", "3000", "bash", "-c", loop)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        result = playbook("-e", f"product_instances={count}")
        MANAGER.check("sleep 5")
    finally:
        MANAGER.run(f"touch {stop}")
        lines, _ = process.communicate(timeout=120)
        MANAGER.run(f"rm -f {stop}")
    assert result.returncode == 0, tail(result)
    lines = lines.splitlines()
    failed = [line for line in lines if not line.startswith("200 ")]
    print(f"scale to {count}: {len(lines)} requests, {len(failed)} failed")
    assert len(lines) >= 50
    assert failed == [], failed[:5]
    return lines


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
