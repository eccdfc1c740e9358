"""The loopback floor: the same services on 127.0.0.1 without namespaces, plus an nginx gateway over them."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
from shoplab.devtools.servers import LOOPBACK, Process, free_port, port_open, wait_for
from shoplab.devtools.stack import Stack, start_stack

from shoplab_bench import cpu

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def render_nginx(listen: str, products: list[str], orders: list[str], run_dir: str, **extra) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    values = {"workers": 2, "keepalive": 64, "user": "", **extra}
    return env.get_template("nginx.conf.j2").render(
        listen=listen, products=products, orders=orders, run_dir=run_dir, **values
    )


@dataclass
class Floor:
    stack: Stack
    nginx: Process | None

    @property
    def gateway(self) -> str:
        return self.stack.gateway_url

    @property
    def product(self) -> str:
        return f"http://{LOOPBACK}:{self.stack.products[0].port}"

    @property
    def order(self) -> str:
        return f"http://{LOOPBACK}:{self.stack.orders[0].port}"

    @property
    def nginx_url(self) -> str | None:
        return f"http://{LOOPBACK}:{self.nginx.port}" if self.nginx else None

    def stop(self) -> None:
        self.stack.servers.stop()


def start_floor(
    products: int = 2,
    orders: int = 2,
    workers: int = 2,
    nginx: bool = True,
    scheduling: dict[str, str] | None = None,
    *,
    per_service_env: dict[str, dict[str, str]] | None = None,
    **env: str,
) -> Floor:
    """Start Redis, PostgreSQL, the four services (gunicorn, `workers` each) and nginx on loopback.

    `scheduling`: service -> CPU scheduling policy (the topology's `cpu_scheduling`), applied as the netns
    units and the containers apply it, so the floor differs from the modes by the namespaces only.
    `per_service_env`: service -> environment for its instances only (the server-stack alternatives)."""
    env.setdefault("LOG_LEVEL", "INFO")
    stack = start_stack(
        products=products, orders=orders, workers=workers, per_service_env=per_service_env, **env
    )
    try:
        apply_scheduling(stack, scheduling or {})
        proxy = _start_nginx(stack) if nginx else None
    except BaseException:
        stack.servers.stop()
        raise
    return Floor(stack, proxy)


def apply_scheduling(stack: Stack, scheduling: dict[str, str]) -> None:
    """SCHED_BATCH for every thread of every process of the services whose policy is `batch` (workers are
    forked already; threads and PostgreSQL backends started later inherit it)."""
    children: dict[int, list[int]] = {}
    for proc in cpu.snapshot().values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    for process in stack.servers.processes:
        service = process.name.rsplit("-", 1)[0] if process.name[-1].isdigit() else process.name
        if scheduling.get(service, "other") != "batch":
            continue
        tree = [process.popen.pid]
        while tree:
            pid = tree.pop()
            tree += children.get(pid, [])
            for task in os.listdir(f"/proc/{pid}/task"):
                os.sched_setscheduler(int(task), os.SCHED_BATCH, os.sched_param(0))


def _start_nginx(stack: Stack) -> Process:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    run_dir = stack.servers.root / "nginx"
    run_dir.mkdir()
    port = free_port()
    conf = run_dir / "nginx.conf"
    conf.write_text(
        render_nginx(
            listen=f"{LOOPBACK}:{port}",
            products=[f"{LOOPBACK}:{p.port}" for p in stack.products],
            orders=[f"{LOOPBACK}:{p.port}" for p in stack.orders],
            run_dir=str(run_dir),
            user="nobody nogroup" if os.geteuid() == 0 else "",
        )
    )
    subprocess.run([binary, "-t", "-q", "-c", str(conf)], check=True)
    process = stack.servers._spawn("nginx", [binary, "-c", str(conf)], port)
    process.stop_signal = 3  # SIGQUIT: graceful
    wait_for(lambda: port_open(port) or stack.servers._died(process), 10, "nginx")
    return process
