"""Helpers for the operations tests (test_5x_ops_*.py): run an operations playbook against the docker
lab's host (this machine, or the lab VM: labhost.LAB), read the database's digest the way lab_backup does,
talk to the gateway from this machine."""

from __future__ import annotations

import subprocess

from conftest import PROJECT, docker
from labhost import LAB
from labtest import digest_script, parse_digest, tail  # noqa: F401 (tail: re-exported for the tests)


def playbook(name: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/<name> -e mode=docker …: the project's own configuration and inventory
    for this machine, the scenario's inventory for a lab VM (as its converge ran)."""
    return LAB.playbook(f"playbooks/{name}", "docker", *extra, timeout=timeout)


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
    out = docker(
        "exec", service_container("postgres"), "bash", "-c", digest_script(f"psql -U {user} -d {db}")
    )
    return parse_digest(out)


class RequestLoop:
    """GET the gateway from this machine (its published port: on loopback, or at the lab VM's address) from
    a few threads until stopped (bounded), recording failures and which instance answered
    (X-Upstream-Instance) when."""

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
