"""The topology data (through the project's own filters) and the lab host."""

from __future__ import annotations

import json
import os
import shlex

import labhost
from labtest import FILTERS, TOPOLOGY, curl_command, parse_curl_response

COUNTS = {
    "product_instances": int(os.environ.get("SHOPLAB_PRODUCT_INSTANCES", TOPOLOGY["product_instances"])),
    "order_instances": int(os.environ.get("SHOPLAB_ORDER_INSTANCES", TOPOLOGY["order_instances"])),
}
INSTANCES = FILTERS.shoplab_instances(TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_tiers"], COUNTS)
MATRIX = FILTERS.shoplab_flow_matrix(
    INSTANCES, TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_allowed_flows"]
)
TIERS = TOPOLOGY["shoplab_tiers"]


def instance(service: str, index: int = 1) -> dict:
    return next(i for i in INSTANCES if i["service"] == service and i["index"] == index)


# What the lab hosts are (set by the scenario, molecule.yml): `container`, systemd lab-host containers
# (default, exercises), or `vm`, lab VMs reached over SSH (vm).
LAB_HOST_KIND = labhost.KIND or "container"
# docker:// runs commands with `docker exec`, much faster than one Ansible call per command; ansible://
# opens SSH with the inventory's address, user and key (testinfra's SSH backend, one connection kept).
TESTINFRA_HOSTS = [
    f"{'docker' if LAB_HOST_KIND == 'container' else 'ansible'}://{name}"
    for name in labhost.lab_host_names("shoplab-netns")
]


def on_lab_host(name: str, *argv: str) -> list[str]:
    """The command that runs argv on lab host `name` from this machine, for what testinfra cannot do (a
    process kept running beside the tests, a reboot): `docker exec`, or ssh with argv quoted for the
    remote shell (molecule/shared/labhost.py, which the docker scenario's tests use too)."""
    if LAB_HOST_KIND == "container":
        return ["docker", "exec", name, *argv]
    return labhost.over_ssh(name, *argv)


class Lab:
    """Helpers on the lab host: run, JSON, HTTP to the gateway after checking its route."""

    def __init__(self, host):
        self.host = host

    def run(self, command: str):
        return self.host.run(command)

    def check(self, command: str) -> str:
        result = self.host.run(command)
        assert result.rc == 0, f"{command!r} failed ({result.rc}): {result.stderr or result.stdout}"
        return result.stdout

    def json(self, command: str):
        return json.loads(self.check(command))

    def route_dev(self, address: str) -> str:
        route = self.json(f"ip -j route get {shlex.quote(address)}")
        return route[0].get("dev", "")

    def http(
        self, method: str, path: str, body: dict | None = None, operator: bool = False
    ) -> tuple[int, dict, str]:
        """One request to the gateway from the lab host, only once its route leaves via its bridge;
        `operator`: with the lab's operator token (read on the lab host, handed to curl on its stdin, so
        it is never on a command line or in the test's output)."""
        gateway = instance("gateway")
        dev = self.route_dev(gateway["address"])
        assert dev == gateway["bridge"], f"route to {gateway['address']} leaves via {dev!r}: refusing"
        url = f"http://{gateway['address']}:{gateway['port']}{path}"
        return parse_curl_response(self.check(curl_command(url, method, body, operator)))
