"""The lab host as the tests on this machine reach it: where they run a command, read a file, open a test
connection from, find the gateway, and point an operations playbook at. The docker scenario's lab host is
this machine (it converges localhost); the vm-docker scenario's is a lab VM (SHOPLAB_LAB_HOST_KIND=vm),
reached over SSH as Ansible reaches it (the scenario's inventory: address, user, key). A test calls the
same API either way, so it checks the same in both; here the commands run as the same argv that goes
over SSH to a VM, only without ssh in front.

On pytest's pythonpath (the project's pyproject.toml), next to labtest.py. The netns scenarios reach
their lab hosts through labdata.py (docker exec, or for the vm scenario the SSH command line from here).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import labtest
import yaml
from shoplab_vms import shoplab_ssh_argv

__all__ = ["KIND", "LAB", "LabHost", "hostvars", "lab_host_names", "over_ssh", "probe_results", "ssh_argv"]

# What the scenario's lab hosts are (its molecule.yml sets SHOPLAB_LAB_HOST_KIND): `vm`, lab VMs reached
# over SSH (the vm and vm-docker scenarios); unset, the scenario's own kind: lab-host containers (default,
# exercises: labdata.py) or this machine (docker).
KIND = os.environ.get("SHOPLAB_LAB_HOST_KIND", "")

# Run by the lab host's Python: argv[1] the timeout (s), then address:port targets. Each line says
# `<target> open`, or `<target> closed` when the connection is refused or times out.
_PROBE = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor

def connect(target):
    address, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((address, int(port)), timeout=float(sys.argv[1])):
            return target + " open"
    except OSError:
        return target + " closed"

with ThreadPoolExecutor(max_workers=16) as pool:
    print("\\n".join(pool.map(connect, sys.argv[2:])))
"""


def probe_results(out: str, targets: list[tuple[str, int]], where: str) -> dict[tuple[str, int], bool]:
    """Read probe lines (`<address>:<port> open|closed`, one per target) into {target: opened}; every
    target must have its line."""
    found = {}
    for line in out.splitlines():
        endpoint, state = line.split()
        address, port = endpoint.rsplit(":", 1)
        found[(address, int(port))] = state == "open"
    assert set(found) == set(targets), f"{where}: missing probe results"
    return found


def _inventory_dir() -> str | None:
    """The Molecule scenario's inventory folder (its host and group vars beside it), if any."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(inventory).parent) if inventory else None


def lab_host_names(default: str) -> list[str]:
    """The Molecule instances in group `lab` (the scenario's lab hosts); [default] outside Molecule."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        return [default]
    data = yaml.safe_load(Path(inventory).read_text())
    hosts = data.get("lab", {}).get("hosts") or data.get("all", {}).get("hosts") or {}
    return sorted(hosts) or [default]


@functools.cache
def hostvars(name: str) -> dict:
    """Lab host `name`'s variables in the scenario's inventory, as Ansible sees them (address, user, key)."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(Path(inventory).parent), "--host", name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(listed.stdout)


def ssh_argv(name: str) -> tuple[str, ...]:
    """ssh to lab VM `name` as Ansible reaches it (the scenario's inventory: address, user, key)."""
    return tuple(shoplab_ssh_argv(hostvars(name), name))


def over_ssh(name: str, *argv: str) -> list[str]:
    """The command line that runs argv on lab VM `name`: ssh hands its command to the remote shell as one
    line, so argv goes quoted for that shell, after `--` (nothing of it is read as an option of ssh's)."""
    return [*ssh_argv(name), "--", shlex.join(argv)]


class LabHost:
    """One lab host from the test process: this machine (`local`), or a lab VM over SSH."""

    def __init__(self, name: str, local: bool):
        self.name = name  # its inventory name: the host of a playbook's results (exercises: results/<name>)
        self.local = local

    def argv(self, *argv: str) -> list[str]:
        """The command line that runs argv on the lab host from this machine."""
        return list(argv) if self.local else over_ssh(self.name, *argv)

    def run(self, *argv: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """argv on the lab host, its output as text; stdin is empty (ssh would read the tests' own).
        `check`: an AssertionError naming the command, the host and the error output when it fails."""
        done = subprocess.run(
            self.argv(*argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"{shlex.join(argv)} failed on {self.name} ({done.returncode}): {done.stderr.strip()}"
            )
        return done

    def read_file(self, path: str) -> str:
        """A file of the lab host (cat: the same read here and over SSH)."""
        return self.run("cat", "--", path, check=True).stdout

    def exists(self, path: str) -> bool:
        """Whether path exists on the lab host; a failure to ask (ssh's 255) is not an answer."""
        found = self.run("test", "-e", path)
        assert found.returncode in (0, 1), f"test -e {path} on {self.name}: {found.stderr.strip()}"
        return found.returncode == 0

    @property
    def address(self) -> str:
        """The lab host's address from this machine: loopback, or the VM's on the lab VM network."""
        return "localhost" if self.local else hostvars(self.name)["ansible_host"]

    def url(self, port: int) -> str:
        """http:// to a port the lab host publishes: on loopback here, on every address of a lab VM (its
        inventory's docker_stack_publish_address), so reached at the VM's own address from this machine."""
        return f"http://{self.address}:{port}"

    def probe(self, targets: list[tuple[str, int]], timeout: float) -> dict[tuple[str, int], bool]:
        """Open a TCP connection from the lab host itself to every target, in parallel, each within `timeout`
        seconds: True when it opens, False when it is refused or times out. The lab host's Python connects
        (this machine's: the tests' own; a VM's python3, there for Ansible), so a VM's firewall is probed
        from the VM, as a test from the lab host means."""
        python = sys.executable if self.local else "python3"
        endpoints = [f"{address}:{port}" for address, port in targets]
        rounds = len(endpoints) // 16 + 1
        out = self.run(python, "-c", _PROBE, str(timeout), *endpoints, check=True,
                       timeout=60 + rounds * timeout).stdout  # fmt: skip
        return probe_results(out, targets, self.name)

    @property
    def inventory(self) -> str | None:
        """The inventory a playbook reaches the lab host with: None for this machine (the project's own, as
        `make` runs it); for a VM, the scenario's (its group_vars and host_vars, as its converge had)."""
        return None if self.local else _inventory_dir()

    def playbook(
        self, path: str, mode: str, *extra: str, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """labtest.playbook against the lab host (path relative to the project). A VM's inventory is the
        scenario's, so the project's build folder is passed as the scenario's extra-vars pass it."""
        if self.local:
            return labtest.playbook(path, mode, *extra, timeout=timeout)
        build = f"shoplab_build_dir={labtest.PROJECT_DIR / 'build'}"
        return labtest.playbook(path, mode, "-e", build, *extra, inventory=self.inventory, timeout=timeout)


# The scenario's lab host (its first in group `lab`): `localhost` for the docker scenario and outside
# Molecule, the lab VM for vm-docker. (The netns scenarios' tests use labdata.py, not this.)
LAB = LabHost(lab_host_names("localhost")[0], local=KIND != "vm")
