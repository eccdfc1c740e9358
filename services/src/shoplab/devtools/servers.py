"""Start real Redis, PostgreSQL and Shoplab services on free loopback ports, and stop them again.

Used by services/tests (pytest fixtures) and by `shoplab.devserver` (make run-local). Everything
listens on 127.0.0.1 only and lives in a temporary directory that `stop()` removes.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:  # the thing is not up yet: any failure means "try again"
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"{what} not up after {timeout}s (last error: {last_error})")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def answers_as(url: str, instance_id: str) -> bool:
    with urllib.request.urlopen(url, timeout=1.0) as response:
        return json.load(response).get("instance") == instance_id


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL the process group: the gunicorn master and its workers die without cleaning up."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Servers:
    """A temporary directory holding the logs and data of every server started through it."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shoplab-")))
    processes: list[Process] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], port: int, env: dict | None = None, **kwargs) -> Process:
        log_path = self.root / f"{name}.log"
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group, so kill() takes the workers too
                **kwargs,
            )
        process = Process(name, popen, log_path, port)
        self.processes.append(process)
        return process

    # --- Redis -------------------------------------------------------------------------------------
    def start_redis(self, name: str = "redis", port: int | None = None, password: str = "") -> Process:
        port = port or free_port()
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--dir", str(self.root),
            *(["--requirepass", password] if password else []),
        ]  # fmt: skip
        process = self._spawn(name, argv, port)
        wait_for(lambda: port_open(port) or self._died(process), 10, name)
        return process

    # --- PostgreSQL --------------------------------------------------------------------------------
    def start_postgres(
        self,
        name: str = "postgres",
        database: str = "shoplab",
        user: str = "shoplab",
        port: int | None = None,
    ) -> str:
        """Start a throwaway cluster; returns its DATABASE_URL."""
        bindir = postgres_bindir()
        data = self.root / name
        data.mkdir()
        demote = _unprivileged_runner(data)
        subprocess.run(
            [*demote, f"{bindir}/initdb", "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
             "--no-sync", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        port = port or free_port()
        argv = [
            *demote, f"{bindir}/postgres", "-D", str(data), "-p", str(port), "-k", str(data),
            "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]  # fmt: skip
        process = self._spawn(name, argv, port)
        process.stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave
        wait_for(lambda: self._pg_accepts(bindir, port, user) or self._died(process), 30, name)
        subprocess.run(
            [f"{bindir}/psql", "-h", LOOPBACK, "-p", str(port), "-U", user, "-d", "postgres", "-q",
             "-c", f'CREATE DATABASE "{database}"'],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return f"postgresql://{user}@{LOOPBACK}:{port}/{database}"

    @staticmethod
    def _pg_accepts(bindir: str, port: int, user: str) -> bool:
        result = subprocess.run(
            [f"{bindir}/pg_isready", "-h", LOOPBACK, "-p", str(port), "-U", user, "-q"], check=False
        )
        return result.returncode == 0

    # --- Shoplab services --------------------------------------------------------------------------
    def start_service(self, service: str, name: str, env: dict[str, str], wait: bool = True) -> Process:
        port = int(env["PORT"]) if "PORT" in env else free_port()
        full_env = {
            **os.environ,
            "BIND_HOST": LOOPBACK,
            "PORT": str(port),
            "INSTANCE_ID": name,
            "ADVERTISE_ADDR": LOOPBACK,
            "WEB_CONCURRENCY": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        argv = [sys.executable, "-m", "shoplab.serve", service]
        process = self._spawn(name, argv, port, env=full_env)
        if wait:
            health = f"http://{LOOPBACK}:{port}/health"
            # Check the name too: if someone else grabbed the port first, that server must not pass for ours.
            wait_for(lambda: answers_as(health, full_env["INSTANCE_ID"]) or self._died(process), 30, name)
        return process

    @staticmethod
    def _died(process: Process) -> bool:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{process.log_tail()}")
        return False

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except (OSError, subprocess.SubprocessError):
                process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for bindir in reversed(candidates):
        if os.path.exists(f"{bindir}/initdb"):
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")


def _unprivileged_runner(data_dir: Path) -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as `nobody` with the directory theirs."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    # nobody must be able to reach its directory: the temp root is created 0700 by mkdtemp.
    os.chmod(data_dir.parent, 0o755)
    os.chown(data_dir, nobody.pw_uid, nobody.pw_gid)
    os.chmod(data_dir, 0o700)
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
