"""Helpers for the netns operations tests (test_5x_ops_*.py): run an operations playbook against the
scenario's lab host with the scenario's inventory (as test_90_absent does), read the database's
digest the way lab_backup does, and run a bounded request loop inside the lab host.

Outside Molecule (SHOPLAB_OPS_HOST=docker://shoplab-labhost), the playbooks use the project's
inventory, which reaches the `make up MODE=netns` lab host container."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import labtest
from labdata import TESTINFRA_HOSTS, TOPOLOGY, instance, on_lab_host
from labtest import digest_script, parse_digest, tail  # noqa: F401 (tail: re-exported for the tests)

OPS_HOSTS = [os.environ["SHOPLAB_OPS_HOST"]] if os.environ.get("SHOPLAB_OPS_HOST") else TESTINFRA_HOSTS


def playbook(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:  # the project's inventory: the `make up MODE=netns` lab host container
        return labtest.playbook(f"playbooks/{name}", "netns", *extra, timeout=timeout)
    # As the scenario's converge: its inventory, whose host_vars publish the gateway on the lab host.
    return labtest.playbook(
        f"playbooks/{name}",
        "netns",
        "-e",
        f"shoplab_build_dir={labtest.PROJECT_DIR / 'build'}",
        *extra,
        inventory=str(Path(inventory).parent),
        timeout=timeout,
    )


def scenario_converge(*extra: str) -> subprocess.CompletedProcess:
    """The scenario's own converge playbook against its inventory, as Molecule's converge step runs it
    (test_22 re-applies it with other settings, test_90 with state=absent)."""
    scenario = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    return labtest.playbook(
        scenario / "converge.yml",
        "netns",
        "-e",
        f"shoplab_build_dir={labtest.PROJECT_DIR / 'build'}",
        *extra,
        inventory=str(Path(inventory).parent) if inventory else None,
    )


def digest(lab) -> dict[str, str]:
    """table -> 'rows|md5' of the live database, over the Unix socket as postgres."""
    db = TOPOLOGY["shoplab_db_name"]
    bin_dir = f"/usr/lib/postgresql/{TOPOLOGY['shoplab_netns_postgres_version']}/bin"
    psql = f"{bin_dir}/psql -h {TOPOLOGY['shoplab_netns_postgres_socket_dir']} -U postgres"
    out = lab.check(f"bash -c {shlex.quote(digest_script(f'{psql} -d {db}'))}")
    return parse_digest(out)


def on_ops_host(*argv: str) -> list[str]:
    """argv run on the lab host of the operations tests, from this machine."""
    return on_lab_host(OPS_HOSTS[0].split("://", 1)[1], *argv)


def start_request_loop(lab, count: int = 20000, path: str = "/api/products?per_page=5") -> tuple:
    """GET the gateway from inside the lab host, once the route to the gateway leaves via its bridge, `count`
    times at most and no longer than a playbook may take (labtest.playbook's timeout, TIMEOUT_FACTOR times
    longer in a lab VM, where one scale under this loop took 20 minutes under TCG); each status code and
    upstream instance goes to stdout. Its stop file ends it (see stop_request_loop); the bound only ends a
    forgotten loop."""
    gateway = instance("gateway")
    assert lab.route_dev(gateway["address"]) == gateway["bridge"], "gateway not behind its bridge: refusing"
    url = f"http://{gateway['address']}:{gateway['port']}{path}"
    stop = f"/tmp/shoplab-ops-loop-{os.getpid()}-{uuid.uuid4().hex[:8]}.stop"
    loop = (
        f"i=0; while [ $i -lt {count} ] && [ ! -e {stop} ]; do i=$((i+1));"
        f" curl -s -o /dev/null -m 5 -w '%{{http_code}} %header{{x-upstream-instance}}\\n' {shlex.quote(url)}"
        " || echo curl-failed; sleep 0.05; done"
    )
    process = subprocess.Popen(
        on_ops_host("timeout", str(660 * labtest.TIMEOUT_FACTOR), "bash", "-c", loop),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return process, stop


def stop_request_loop(loop: tuple) -> list[str]:
    """Ask the loop to stop (its stop file), wait for it, and return its lines."""
    process, stop = loop
    subprocess.run(on_ops_host("touch", stop), capture_output=True, check=False)
    out, _ = process.communicate(timeout=60)
    subprocess.run(on_ops_host("rm", "-f", stop), capture_output=True, check=False)
    return out.splitlines()
