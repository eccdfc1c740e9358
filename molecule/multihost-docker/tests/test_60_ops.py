"""The status playbook on the Swarm: each VM reports its own part (membership, the overlays it carries with
their VNI and peers, its tasks, the Swarm's firewall chains), the manager adds the nodes with their lab-host
labels and where each service's task runs, the registry's VM lists every instance of the lab."""

from __future__ import annotations

import re

import labvms
from labops import FAIL_ON_PROBLEMS
from labtest import tail
from labvms import SPAN
from swdata import HOSTS, INSTANCES, TIERS, instance, swarm_service


def playbook(name: str, *extra: str):
    return labvms.scenario_playbook(name, "docker", *extra)


def test_status_reports_each_vms_part_of_the_swarm_and_no_problem():
    result = playbook("status.yml", *FAIL_ON_PROBLEMS)
    assert result.returncode == 0, tail(result)
    for number, name in enumerate(HOSTS, start=1):
        assert (
            f"Shoplab docker lab on {name} (lab host {number} of {SPAN}: {', '.join(HOSTS)})" in result.stdout
        )
    # Only the manager lists the nodes and the services, each service on the VM the placement gives it.
    assert result.stdout.count("== Swarm nodes and their lab-host labels") == 1
    for inst in INSTANCES:
        assert re.search(rf"{swarm_service(inst)} +1/1 +on lab host {inst['lab_host']}\b", result.stdout), (
            inst
        )
    # Every VM carries the overlays its tasks join, with their VNI and the other VMs as peers.
    backend = TIERS["backend"]["docker_network"]
    assert len(re.findall(rf"{backend} +\S+ +VNI \d+", result.stdout)) == SPAN
    registry_vm = HOSTS[instance("registry")["lab_host"] - 1]
    assert result.stdout.count("(the registry's task runs on lab host") == SPAN - 1, registry_vm
    assert "No problem found" in result.stdout
    assert "changed=0" in result.stdout


def test_diagram_draws_the_three_vms_and_their_overlays(tmp_path):
    result = playbook(
        "diagram.yml", "-e", f"lab_diagram_dir={tmp_path}", "-e", "lab_diagram_fail_on_differences=true"
    )
    assert result.returncode == 0, tail(result)
    dot = (tmp_path / f"topology-docker-{SPAN}hosts.dot").read_text()
    assert f"mode=docker (a Swarm) over {SPAN} lab hosts" in dot
    for number, name in enumerate(HOSTS, start=1):
        assert f'"cluster_host_{number}"' in dot and f"lab host {number}: {name}" in dot
    for inst in INSTANCES:
        assert re.search(rf'"n_h{inst["lab_host"]}_{re.escape(swarm_service(inst))}\.', dot), inst["name"]
    # The backend overlay is carried by every VM (each runs a task on it): joined across every pair.
    backend = TIERS["backend"]["docker_network"]
    joined = re.findall(rf'"n_h\d_ov-{backend}" -> "n_h\d_ov-{backend}" \[dir=both', dot)
    assert len(joined) == SPAN * (SPAN - 1) // 2
    assert "<svg" in (tmp_path / f"topology-docker-{SPAN}hosts.svg").read_text()
