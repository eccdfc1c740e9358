"""Helpers for the operations tests (test_ops_*.py): run an operations playbook against this host's
docker lab, read the database's digest the way lab_backup does, talk to the gateway on loopback."""

from __future__ import annotations

import os
import subprocess

from conftest import PROJECT, PROJECT_DIR, docker

TABLES = ["products", "orders", "order_items", "idempotency_keys"]
DIGEST_SQL = " UNION ALL ".join(
    f"SELECT '{t}', count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '')) FROM {t} t"
    for t in TABLES
)


def playbook(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/<name> -e mode=docker …, with the project's own configuration."""
    return subprocess.run(
        ["ansible-playbook", "-i", "inventory/hosts.yml", f"playbooks/{name}", "-e", "mode=docker", *extra],
        cwd=PROJECT_DIR,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"),
            "ANSIBLE_FILTER_PLUGINS": str(PROJECT_DIR / "plugins" / "filter"),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tail(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-4000:] + result.stderr[-2000:]


def service_container(service: str) -> str:
    ids = docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={PROJECT}",
        "--filter",
        f"label=org.shoplab.service={service}",
        "--filter",
        "status=running",
    ).split()
    assert ids, f"no running {service} container"
    return ids[0]


def digest(db: str = "shoplab", user: str = "shoplab") -> dict[str, str]:
    """table -> 'rows|md5', as lab_backup's digest.yml computes it."""
    psql = ["psql", "-U", user, "-d", db, "-X", "-tA", "-F", "|", "-c", DIGEST_SQL]
    out = docker("exec", service_container("postgres"), *psql)
    return {line.split("|", 1)[0]: line.split("|", 1)[1] for line in out.splitlines() if line}
