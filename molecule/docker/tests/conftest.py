"""Shared helpers for the docker scenario: the topology data, the filters, `docker` itself, the lab's
containers (healthy, by service) and its access logs.

The tests run on this machine, against a lab host that is this machine too (the docker scenario
converges localhost) or a lab VM (the vm-docker scenario, SHOPLAB_LAB_HOST_KIND=vm). Whatever they run or
read on the lab host (the docker CLI, iptables, ps, its files, a probe "from the host") goes through
molecule/shared/labhost.py (LAB): directly here, over SSH in a VM. The gateway is reached on its published
port (localhost here, the VM's address there) and the operations playbooks get the VM's inventory there.
testinfra's `host` (test_25's secret files) is the scenario's instance either way: localhost, or the VM.
Files run in name order, as the netns scenario's: test_10_topology, test_20_flow, test_21_logs,
test_25_hardening, test_30_isolation, test_40_scale (leaves three product instances), the operations
(test_5x_ops_*: scale puts the topology's count back before the diagram compares the lab with it),
test_90_absent last.
"""

from __future__ import annotations

import json
import time

import pytest
from labhost import LAB, probe_results
from labtest import FILTERS, PROJECT_DIR, TOPOLOGY

__all__ = ["FILTERS", "PROJECT_DIR"]

PROJECT = "shoplab"
COMPOSE_FILE = "/opt/shoplab/docker/docker-compose.yml"
SECRET_FILE = "/etc/shoplab/docker/db-password"
LOG_DIR = "/var/log/shoplab-docker"  # docker_stack_log_dir's default
PROBE_TIMEOUT = 3


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """The docker CLI on the lab host, against its engine."""
    result = LAB.run("docker", *args, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def lab_containers() -> list[dict]:
    """`docker inspect` of every container of the Compose project, sorted by service and number."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
    if not ids:
        return []
    found = json.loads(docker("inspect", *ids))
    return sorted(
        found,
        key=lambda c: (
            c["Config"]["Labels"].get("org.shoplab.service", ""),
            # <project>-<compose service>-<n>: each instance is a Compose service of its own.
            int(c["Name"].rsplit("-", 1)[1]) if c["Name"].rsplit("-", 1)[-1].isdigit() else 0,
        ),
    )


def counts(topology: dict) -> dict:
    return {
        "product_instances": topology["product_instances"],
        "order_instances": topology["order_instances"],
    }


def by_service(containers: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for container in containers:
        out.setdefault(container["Config"]["Labels"]["org.shoplab.service"], []).append(container)
    return out


def wait_healthy(expected: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        containers = lab_containers()
        states = [c["State"].get("Health", {}).get("Status") for c in containers]
        if len(containers) == expected and all(s == "healthy" for s in states):
            return containers
        if time.monotonic() > deadline:
            names = {c["Name"].lstrip("/"): c["State"].get("Health", {}).get("Status") for c in containers}
            raise AssertionError(f"expected {expected} healthy containers, found {names}")
        time.sleep(2)


def probe_from(container: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    """Open a TCP connection to every target from inside `container`, in parallel, timeout 3 s each."""
    script = " ".join(
        f'( timeout {PROBE_TIMEOUT} bash -c "exec 3<>/dev/tcp/{addr}/{port}" 2>/dev/null'
        f' && echo "{addr}:{port} open" || echo "{addr}:{port} closed" ) &'
        for addr, port in targets
    )
    out = docker("exec", container, "bash", "-c", f"{script} wait", timeout=60)
    return probe_results(out, targets, container)


def lab_bridges(topology: dict) -> set[str]:
    """The bridges of the lab's networks (Docker names one br-<first 12 characters of its id>)."""
    return {
        f"br-{json.loads(docker('network', 'inspect', tier['docker_network']))[0]['Id'][:12]}"
        for tier in topology["shoplab_tiers"].values()
    }


def route_devices(addresses: list[str]) -> dict[str, str]:
    """The device the lab host's route to each address leaves through (`ip -o route get`, one line per
    address, all in one call: one round trip to a VM)."""
    loop = 'for a; do ip -o route get "$a" || exit 1; done'
    lines = LAB.run("sh", "-c", loop, "sh", *addresses, check=True).stdout.splitlines()
    assert len(lines) == len(addresses), lines
    return {a: line.split(" dev ", 1)[1].split()[0] for a, line in zip(addresses, lines, strict=True)}


def probe_from_host(targets: list[tuple[str, int]], topology: dict) -> dict[tuple[str, int], bool]:
    """The same from the lab host itself (this machine, or the VM: the matrix's `host`), after checking
    that every target's route there leaves through a lab bridge: probes go to the lab's own containers and
    nowhere else."""
    bridges = lab_bridges(topology)
    for address, device in route_devices(sorted({a for a, _port in targets})).items():
        assert device in bridges, f"{address} is not behind a lab bridge ({device}): refusing to probe it"
    return LAB.probe(targets, PROBE_TIMEOUT)


def access_log(service: str) -> str:
    return f"{LOG_DIR}/{service}.access.log"


def access_lines(service: str, text: str) -> list[str]:
    """The lines of `service`'s access log (on the lab host) holding `text`, grepped there: only those
    lines come back, not the whole log. A missing or unreadable file fails (grep's status 2)."""
    found = LAB.run("grep", "-F", "-e", text, "--", access_log(service))
    assert found.returncode in (0, 1), f"{access_log(service)} on {LAB.name}: {found.stderr.strip()}"
    return found.stdout.splitlines()


def wait_for_access_line(service: str, text: str, timeout: float = 15) -> dict:
    """The last line of `service`'s access log holding `text` (lines are written every second)."""
    deadline = time.monotonic() + timeout
    while True:
        found = access_lines(service, text)
        if found:
            return json.loads(found[-1])
        assert time.monotonic() < deadline, f"no line with {text!r} in {access_log(service)}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def topology() -> dict:
    return TOPOLOGY


@pytest.fixture(scope="module")
def instances(topology) -> list[dict]:
    return FILTERS.shoplab_instances(
        topology["shoplab_services"], topology["shoplab_tiers"], counts(topology)
    )


@pytest.fixture(scope="module")
def containers(instances) -> list[dict]:
    """The lab's containers, once all of the topology's are healthy (each test file waits once)."""
    return wait_healthy(len(instances))


@pytest.fixture(scope="module")
def docker_instances(instances, topology) -> list[dict]:
    """The instances with their Compose service and fixed address on each network (tiered layout)."""
    return FILTERS.shoplab_docker_instances(
        instances,
        topology["shoplab_services"],
        topology["shoplab_tiers"],
        topology["shoplab_allowed_flows"],
        topology["shoplab_docker_guest_offset"],
    )


@pytest.fixture(scope="session")
def gateway_url(topology) -> str:
    """The gateway's published port from this machine: http://localhost:<port>, or the lab VM's address."""
    return LAB.url(topology["shoplab_services"]["gateway"]["port"])


@pytest.fixture(scope="session")
def service_networks(topology) -> dict:
    """Compose service -> the Docker networks (full names) it must join (tiered layout)."""
    tiers = topology["shoplab_tiers"]
    per_service = FILTERS.shoplab_docker_networks(
        topology["shoplab_services"], topology["shoplab_allowed_flows"]
    )
    return {
        name: sorted(tiers[tier]["docker_network"] for tier in found) for name, found in per_service.items()
    }
