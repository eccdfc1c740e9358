"""Helpers for the netns operations tests (test_5x_ops_*.py): run an operations playbook against the
scenario's lab host with the scenario's inventory (as test_90_absent does), read the database's
digest the way lab_backup does, and run a bounded request loop inside the lab host.

Outside Molecule (SHOPLAB_OPS_HOST=docker://shoplab-labhost), the playbooks use the project's
inventory, which reaches the `make up MODE=netns` lab host container."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid
from pathlib import Path

from labdata import PROJECT, TESTINFRA_HOSTS, TOPOLOGY, instance

OPS_HOSTS = [os.environ["SHOPLAB_OPS_HOST"]] if os.environ.get("SHOPLAB_OPS_HOST") else TESTINFRA_HOSTS
TABLES = ["products", "orders", "order_items", "idempotency_keys"]
DIGEST_SQL = " UNION ALL ".join(
    f"SELECT '{t}', count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '')) FROM {t} t"
    for t in TABLES
)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The output as one line of plain words: no colours (Molecule forces them), no YAML line wrapping
    or quote doubling, so a test can look for a whole message. Under Molecule's configuration Ansible
    prints a failed task's result on stderr, so both streams are searched."""
    text = ANSI.sub("", result.stdout + "\n" + result.stderr).replace("\\n", " ").replace("''", "'")
    result.stdout = " ".join(text.split())
    return result


def playbook(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = ["ansible-playbook", str(PROJECT / "playbooks" / name), "-e", "mode=netns"]
    command += ["-e", f"shoplab_build_dir={PROJECT / 'build'}"]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if inventory:
        # As the scenario's converge: the gateway published on port 3080 of the lab host.
        command += ["--inventory", str(Path(inventory).parent), "-e", "netns_firewall_publish_port=3080"]
    else:
        command += ["--inventory", str(PROJECT / "inventory" / "hosts.yml")]
        env["ANSIBLE_CONFIG"] = str(PROJECT / "ansible.cfg")
        env["ANSIBLE_FILTER_PLUGINS"] = str(PROJECT / "plugins" / "filter")
    return _plain(
        subprocess.run(
            [*command, *extra],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    )


def tail(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-4000:] + result.stderr[-2000:]


def digest(lab) -> dict[str, str]:
    """table -> 'rows|md5' of the live database, over the Unix socket as postgres."""
    db = TOPOLOGY["shoplab_db_name"]
    psql = "/usr/lib/postgresql/15/bin/psql -h /run/shoplab-postgres -U postgres"
    out = lab.check(f"{psql} -d {db} -X -tA -F '|' -c {shlex.quote(DIGEST_SQL)}")
    return {line.split("|", 1)[0]: line.split("|", 1)[1] for line in out.splitlines() if line}


def container_name() -> str:
    return OPS_HOSTS[0].split("://", 1)[1]


def start_request_loop(lab, count: int = 20000, path: str = "/api/products?per_page=5") -> tuple:
    """GET the gateway from inside the lab host, `count` times at most (and 300 s at most), once the route
    to the gateway leaves via its bridge; each status code and upstream instance goes to stdout. It stops
    itself when its stop file appears (see stop_request_loop)."""
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
        ["docker", "exec", container_name(), "timeout", "300", "bash", "-c", loop],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return process, stop


def stop_request_loop(loop: tuple) -> list[str]:
    """Ask the loop to stop (its stop file), wait for it, and return its lines."""
    process, stop = loop
    subprocess.run(["docker", "exec", container_name(), "touch", stop], capture_output=True, check=False)
    out, _ = process.communicate(timeout=60)
    subprocess.run(["docker", "exec", container_name(), "rm", "-f", stop], capture_output=True, check=False)
    return out.splitlines()
