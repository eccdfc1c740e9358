"""Helpers for the operations tests (test_ops_*.py): run an operations playbook against this host's
docker lab, read the database's digest the way lab_backup does, talk to the gateway on loopback."""

from __future__ import annotations

import os
import re
import subprocess

from conftest import PROJECT, PROJECT_DIR, docker

TABLES = ["products", "orders", "order_items", "idempotency_keys"]
DIGEST_SQL = " UNION ALL ".join(
    f"SELECT '{t}', count(*), md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), '')) FROM {t} t"
    for t in TABLES
)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The output as one line of plain words: no colours (Molecule forces them), no YAML line wrapping
    or quote doubling, so a test can look for a whole message."""
    text = ANSI.sub("", result.stdout).replace("\\n", " ").replace("''", "'")
    result.stdout = " ".join(text.split())
    return result


def playbook(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/<name> -e mode=docker …, with the project's own configuration."""
    return _plain(
        subprocess.run(
            [
                "ansible-playbook",
                "-i",
                "inventory/hosts.yml",
                f"playbooks/{name}",
                "-e",
                "mode=docker",
                *extra,
            ],
            cwd=PROJECT_DIR,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"),
                "ANSIBLE_FILTER_PLUGINS": str(PROJECT_DIR / "plugins" / "filter"),
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_NOCOLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
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


class RequestLoop:
    """GET the gateway on loopback from a few threads until stopped (bounded), recording failures and
    which instance answered (X-Upstream-Instance) when."""

    def __init__(self, url: str, threads: int = 2, pause: float = 0.02, limit: int = 4000):
        import threading

        self.url, self.pause, self.limit = url, pause, limit
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.upstreams: list[tuple[float, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        import time

        import requests

        session = requests.Session()
        while not self.stop.is_set():
            with self.lock:
                if self.sent >= self.limit:
                    return
                self.sent += 1
            try:
                response = session.get(self.url, timeout=10)
                with self.lock:
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                    self.upstreams.append((time.monotonic(), response.headers.get("X-Upstream-Instance", "")))
            except requests.RequestException as error:
                with self.lock:
                    self.failures.append(repr(error))
            time.sleep(self.pause)

    def __enter__(self) -> RequestLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
