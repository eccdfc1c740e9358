"""A lab over several lab VMs as its tests see it, whatever the mode: the topology data placed over the
scenario's VMs (through the project's own filters, as the roles place it), each VM reached over SSH, the
route check before this machine sends anything to one, and a capture on a VM's card while traffic flows.
The multihost (netns) and multihost-docker (Swarm) scenarios both build on it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import labhost
import labtest
import yaml
from labtest import FILTERS, PROJECT_DIR, TCP_PROBE, TIMEOUT_FACTOR, TOPOLOGY, tail

__all__ = [
    "HOSTS", "INSTANCES", "MATRIX", "SERVICES", "SPAN", "TIERS", "VM_BRIDGE", "WORKERS", "Vm",
    "assert_routed_to_a_lab_vm", "capture_during", "host_of", "instance", "instance_at", "scale_under_load",
    "scenario_playbook", "served_after_losing",
]  # fmt: skip

# The scenario's lab VMs, host 1 first, and how many of them form the lab (molecule.yml).
HOSTS = labhost.lab_host_names("shoplab-vm-1")
SPAN = int(os.environ.get("SHOPLAB_LAB_SPAN", len(HOSTS)))
COUNTS = {"product_instances": TOPOLOGY["product_instances"], "order_instances": TOPOLOGY["order_instances"]}
SERVICES, TIERS = TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_tiers"]
INSTANCES = FILTERS.shoplab_instances(SERVICES, TIERS, COUNTS, TOPOLOGY["shoplab_placement"], SPAN)
MATRIX = FILTERS.shoplab_flow_matrix(INSTANCES, SERVICES, TOPOLOGY["shoplab_allowed_flows"])
VM_BRIDGE = yaml.safe_load((PROJECT_DIR / "group_vars" / "all" / "lab_vms.yml").read_text())[
    "shoplab_vm_network"
]["bridge"]


def instance(service: str, index: int = 1) -> dict:
    return next(i for i in INSTANCES if i["service"] == service and i["index"] == index)


def instance_at(counts: dict, name: str) -> dict:
    """An instance of the lab at other instance counts (`product-3` once scaled), placed over the SPAN VMs
    by the project's own filter, as the roles place it."""
    scaled = FILTERS.shoplab_instances(SERVICES, TIERS, counts, TOPOLOGY["shoplab_placement"], SPAN)
    return next(i for i in scaled if i["name"] == name)


def host_of(inst: dict) -> str:
    """The lab VM that runs an instance (its placement)."""
    return HOSTS[inst["lab_host"] - 1]


class Vm:
    """One lab VM of the lab: a shell command over SSH (molecule/shared/labhost.py), its output."""

    def __init__(self, name: str):
        self.name = name
        self.host = labhost.LabHost(name, local=False)

    @property
    def address(self) -> str:
        return self.host.address

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.host.run("bash", "-c", command, timeout=timeout)

    def check(self, command: str, timeout: float = 120) -> str:
        done = self.run(command, timeout)
        failure = f"{command!r} on {self.name} failed ({done.returncode}): {done.stderr.strip()}"
        assert done.returncode == 0, failure
        return done.stdout

    def json(self, command: str):
        return json.loads(self.check(command))

    def probe(self, prefix: str, targets: list[tuple[str, int]], timeout: float) -> list[dict]:
        """TCP connections to every target, in parallel, by python3 run after `prefix` on this VM (empty:
        the VM itself; `ip netns exec <ns>`; `docker exec <container>`): [{"ok", "seconds", "error"}], one
        per target, in order."""
        cells = [[f"{address}:{port}", address, port] for address, port in targets]
        command = f"{prefix} python3 -c {shlex.quote(TCP_PROBE)} {shlex.quote(json.dumps(cells))} {timeout}"
        rows = self.json(command.strip())
        return [{"ok": ok, "seconds": seconds, "error": detail} for _cell, ok, detail, seconds in rows]


def assert_routed_to_a_lab_vm(address: str) -> None:
    """Traffic from this machine goes only to our own lab VMs: the route to address must leave through the
    lab VM network's bridge (group_vars/all/lab_vms.yml), not the default route."""
    route = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True, check=True)
    device = json.loads(route.stdout)[0]["dev"]
    assert device == VM_BRIDGE, f"route to {address} leaves via {device}, not {VM_BRIDGE}: refusing"


def capture_during(
    vm: Vm, expression: str, traffic: Callable[[], None], flags: str = "-v"
) -> tuple[str, int]:
    """tcpdump on the VM's card (eth0, the lab VM network) while `traffic()` runs, stopped once it returns
    (`timeout` is only its bound); (what it printed, how many packets it captured)."""
    seconds = 15 * TIMEOUT_FACTOR
    command = (
        f"timeout {seconds} tcpdump -i eth0 -nn -l {flags} {shlex.quote(expression)} & echo pid=$! >&2; wait"
    )
    tcpdump = subprocess.Popen(
        vm.host.argv("bash", "-c", command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # tcpdump says "listening on eth0" once it captures: only then is the traffic sent.
    pid, listening = None, False
    while pid is None or not listening:
        line = tcpdump.stderr.readline()
        assert line, "tcpdump ended before it listened"
        pid = int(line.removeprefix("pid=")) if line.startswith("pid=") else pid
        listening = listening or "listening on" in line
    traffic()
    vm.check(f"kill -INT {pid}")
    out, err = tcpdump.communicate(timeout=seconds + 30)
    counted = re.search(r"(\d+) packets? captured", err)
    assert counted, err
    return out, int(counted.group(1))


# The VMs that run neither the gateway and registry nor the datastores: only product and order instances.
WORKERS = sorted(
    {host_of(i) for i in INSTANCES}
    - {host_of(instance(s)) for s in ("gateway", "registry", "redis", "postgres")}
)


def served_after_losing(worker: str, http: Callable, within: float) -> set[str]:
    """Take lab VM `worker` down (its QEMU killed, as a host failure), then ask the shop for product lists
    through `http` (method, path -> status, headers, body) until ten in a row are answered, within `within`
    seconds; the instances that answered those ten."""
    virsh = ["virsh", "--connect", "qemu:///system"]
    subprocess.run([*virsh, "destroy", worker], check=True, capture_output=True)
    deadline = time.monotonic() + within
    streak, served, last = 0, set(), None
    while streak < 10:
        assert time.monotonic() < deadline, f"the shop did not recover without {worker}: {last}"
        status, headers, body = http("GET", "/api/products")
        last = (status, body[:200])
        if status == 200:
            streak += 1
            served.add(headers.get("x-upstream-instance"))
        else:
            streak, served = 0, set()
            time.sleep(1)
    return served


def scenario_playbook(name: str, mode: str, *extra: str) -> subprocess.CompletedProcess:
    """An operations playbook (playbooks/<name>) against the scenario's VMs as its converge reached them: its
    inventory, one lab over SPAN VMs, the project's build folder, and a Swarm's encryption as the scenario
    sets it (docker)."""
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    extra_vars = ["-e", f"shoplab_lab_span={SPAN}", "-e", f"shoplab_build_dir={PROJECT_DIR / 'build'}"]
    if mode == "docker":
        extra_vars += ["-e", f"shoplab_swarm_encrypted={os.environ.get('SHOPLAB_SWARM_ENCRYPTED', 'false')}"]
    return labtest.playbook(f"playbooks/{name}", mode, *extra_vars, *extra, inventory=inventory)


def scale_under_load(vm: Vm, url: str, mode: str, count: int) -> list[str]:
    """scale.yml to `count` product instances while `vm` GETs `url` in a loop (the caller checked the route);
    each request's status and upstream instance. The playbook passed and no request failed."""
    stop = f"/tmp/shoplab-scale-loop-{uuid.uuid4().hex[:8]}.stop"
    loop = (
        f"i=0; while [ $i -lt 20000 ] && [ ! -e {stop} ]; do i=$((i+1));"
        f" curl -s -o /dev/null -m 5 -w '%{{http_code}} %header{{x-upstream-instance}}\\n' {shlex.quote(url)}"
        " || echo curl-failed; sleep 0.1; done"
    )
    argv = vm.host.argv("timeout", "3000", "bash", "-c", loop)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        result = scenario_playbook("scale.yml", mode, "-e", f"product_instances={count}")
        vm.check("sleep 5")
    finally:
        vm.run(f"touch {stop}")
        out, _ = process.communicate(timeout=120)
        vm.run(f"rm -f {stop}")
    assert result.returncode == 0, tail(result)
    lines = out.splitlines()
    failed = [line for line in lines if not line.startswith("200 ")]
    print(f"scale to {count}: {len(lines)} requests, {len(failed)} failed")
    assert len(lines) >= 50
    assert failed == [], failed[:5]
    return lines
