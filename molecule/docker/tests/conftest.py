"""Shared helpers for the docker scenario: the topology data, the filters, and `docker` itself.

The tests run on the lab host (this machine: the scenario converges localhost), so they call the
docker CLI directly and reach the gateway on localhost.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from labtest import FILTERS, PROJECT_DIR, TOPOLOGY

__all__ = ["FILTERS", "PROJECT_DIR"]

PROJECT = "shoplab"
COMPOSE_FILE = "/opt/shoplab/docker/docker-compose.yml"
SECRET_FILE = "/etc/shoplab/docker/db-password"
LOG_DIR = "/var/log/shoplab-docker"  # docker_stack_log_dir's default
GATEWAY_URL = "http://localhost:{port}"


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
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
            int(c["Config"]["Labels"].get("com.docker.compose.container-number", "0")),
        ),
    )


@pytest.fixture(scope="session")
def topology() -> dict:
    return TOPOLOGY


@pytest.fixture(scope="session")
def gateway_url(topology) -> str:
    return GATEWAY_URL.format(port=topology["shoplab_services"]["gateway"]["port"])


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
