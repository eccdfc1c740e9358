"""The docker lab over three VMs as its tests see it: a Swarm stack whose services are the instances of
the topology data, placed over the scenario's VMs as netns mode places them (molecule/shared/labvms.py),
each task's container found on the VM that runs it."""

from __future__ import annotations

import os
import shlex

import labvms
import yaml
from labtest import FILTERS, PROJECT_DIR, TOPOLOGY, curl_command, parse_curl_response
from labvms import HOSTS, INSTANCES, SERVICES, TIERS, assert_routed_to_a_lab_vm, host_of, instance

__all__ = [
    "ENCRYPTED", "GATEWAY", "HOSTS", "INSTANCES", "MANAGER", "NETWORKS", "SERVICES", "STACK", "SWARM",
    "TIERS", "VMS", "Vm", "assert_routed_to_a_lab_vm", "host_of", "instance", "swarm_service",
]  # fmt: skip

SWARM = TOPOLOGY["shoplab_swarm"]
# The stack's name (roles/docker_stack: the Compose project's, which prefixes every Swarm service).
STACK = yaml.safe_load((PROJECT_DIR / "roles" / "docker_stack" / "defaults" / "main.yml").read_text())[
    "docker_stack_project_name"
]
ENCRYPTED = os.environ.get("SHOPLAB_SWARM_ENCRYPTED", "false") == "true"
# Which overlays each service joins (its tier, and the tier of everything it talks to).
NETWORKS = FILTERS.shoplab_docker_networks(SERVICES, TOPOLOGY["shoplab_allowed_flows"])
GATEWAY = SERVICES["gateway"]


def swarm_service(inst: dict) -> str:
    """The Swarm service of an instance: the stack's name, then its Compose service's."""
    scalable = isinstance(SERVICES[inst["service"]]["instances"], str)
    base = SERVICES[inst["service"]]["compose_service"]
    return f"{STACK}_{base}-{inst['index']}" if scalable else f"{STACK}_{base}"


class Vm(labvms.Vm):
    """A lab VM of the Swarm: the containers of the tasks it runs, requests to its published port."""

    def container(self, inst: dict) -> str:
        """The running container of an instance's task on this VM."""
        found = self.check(
            "docker ps -q --filter status=running "
            f"--filter label=com.docker.swarm.service.name={shlex.quote(swarm_service(inst))}"
        ).split()
        assert len(found) == 1, f"{self.name}: {len(found)} running containers of {swarm_service(inst)}"
        return found[0]

    def http(self, method: str, path: str, body: dict | None = None, operator: bool = False):
        """One request to the shop through this VM's published port (the routing mesh hands it to the
        gateway's task, wherever it runs); (status, headers, body)."""
        url = f"http://127.0.0.1:{GATEWAY['port']}{path}"
        return parse_curl_response(self.check(curl_command(url, method, body, operator, 15, mode="docker")))


VMS = {name: Vm(name) for name in HOSTS}
MANAGER = VMS[HOSTS[0]]
