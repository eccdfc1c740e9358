"""nginx over a mode's own product and order instances, in the gateway's network namespace, for one run.

The baseline a user would pick instead of our gateway: nginx (round-robin upstreams, keepalive to the
instances) listening on another port of the gateway's address, started for the run and stopped after it.
  netns   `ip netns exec ns-gateway nginx …` in the lab host; the lab firewall lets the host reach only
          the gateway's port, so a chain of our own (BENCH-OUTPUT, jumped to first from OUTPUT) accepts
          the nginx port for the run and is removed afterwards.
  docker  `nsenter -t <gateway container pid> -n nginx …` on this host: nginx shares the gateway
          container's network namespace (frontend + backend networks); the docker lab's firewall too
          lets the host reach only the gateway's port, so BENCH-OUTPUT-DOCKER accepts nginx's for the run.
A spec (from roles/bench) gives: exec (argv prefix that enters the namespace), files (argv prefix that
reaches the filesystem nginx reads, e.g. `docker exec -i shoplab-labhost`), dir, listen, products,
orders, and optionally firewall: {prefix, chain, rules: [[iptables args], …]}.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from shoplab_bench.floor import render_nginx


def _sh(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


@dataclass
class ModeNginx:
    spec: dict
    popen: subprocess.Popen

    @property
    def conf(self) -> str:
        return f"{self.spec['dir']}/nginx.conf"

    def stop(self) -> None:
        _sh([*self.spec["exec"], "nginx", "-q", "-s", "quit", "-c", self.conf])
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            _sh([*self.spec["exec"], "nginx", "-q", "-s", "stop", "-c", self.conf])
            self.popen.wait(15)
        remove_rules(self.spec)


def add_rules(spec: dict) -> None:
    fw = spec.get("firewall")
    if not fw:
        return
    ipt = [*fw["prefix"], "iptables", "-w"]
    chain = fw["chain"]
    _sh([*ipt, "-N", chain])  # exists already after an interrupted run: fine, flushed next
    _sh([*ipt, "-F", chain])
    for rule in fw["rules"]:
        done = _sh([*ipt, "-A", chain, *map(str, rule)])
        if done.returncode:
            raise RuntimeError(f"iptables -A {chain} {' '.join(rule)}: {done.stderr.strip()}")
    if _sh([*ipt, "-C", "OUTPUT", "-j", chain]).returncode:
        _sh([*ipt, "-I", "OUTPUT", "1", "-j", chain])


def remove_rules(spec: dict) -> None:
    fw = spec.get("firewall")
    if not fw:
        return
    ipt = [*fw["prefix"], "iptables", "-w"]
    while _sh([*ipt, "-C", "OUTPUT", "-j", fw["chain"]]).returncode == 0:
        _sh([*ipt, "-D", "OUTPUT", "-j", fw["chain"]])
    _sh([*ipt, "-F", fw["chain"]])
    _sh([*ipt, "-X", fw["chain"]])


def start(spec: dict) -> ModeNginx:
    conf = render_nginx(listen=spec["listen"], products=spec["products"], orders=spec["orders"],
                        run_dir=spec["dir"], user="nobody nogroup")  # fmt: skip
    path = f"{spec['dir']}/nginx.conf"
    wrote = _sh([*spec["files"], "sh", "-c", f"mkdir -p '{spec['dir']}' && cat > '{path}'"], input=conf)
    if wrote.returncode:
        raise RuntimeError(f"writing {path}: {wrote.stderr.strip()}")
    tested = _sh([*spec["exec"], "nginx", "-t", "-q", "-c", path])
    if tested.returncode:
        raise RuntimeError(f"nginx -t {path}: {tested.stderr.strip()}")
    add_rules(spec)
    popen = subprocess.Popen([*spec["exec"], "nginx", "-c", path], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    handle = ModeNginx(spec, popen)
    host, port = spec["listen"].rsplit(":", 1)
    probe = [*spec["target"]["prefix"], "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"]
    for _ in range(50):
        if popen.poll() is not None:
            remove_rules(spec)
            raise RuntimeError(f"nginx in {spec['target']['name']} exited ({popen.returncode})")
        if _sh(probe).returncode == 0:
            return handle
        time.sleep(0.2)
    handle.stop()
    raise RuntimeError(f"nginx in {spec['target']['name']} does not listen on {spec['listen']}")
