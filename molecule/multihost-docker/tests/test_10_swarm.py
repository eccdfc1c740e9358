"""The Swarm: the three VMs are its nodes (the first the manager), each labelled with its number in the
lab; every instance's task runs on the VM its placement gives it; the Swarm's ports answer the lab's VMs
only."""

from __future__ import annotations

import json
import socket

import pytest
from swdata import HOSTS, INSTANCES, MANAGER, SWARM, VMS, assert_routed_to_a_lab_vm, host_of, swarm_service


def nodes() -> dict[str, dict]:
    """The Swarm's nodes as the manager lists them, by hostname."""
    ids = MANAGER.check("docker node ls -q").split()
    found = json.loads(MANAGER.check("docker node inspect " + " ".join(ids)))
    return {node["Description"]["Hostname"]: node for node in found}


def test_the_lab_vms_are_the_swarms_nodes_the_first_its_manager():
    found = nodes()
    assert set(found) == set(HOSTS), f"nodes {sorted(found)}"
    for name, node in found.items():
        assert node["Status"]["State"] == "ready", f"{name}: {node['Status']}"
        assert node["Spec"]["Availability"] == "active"
        assert (node["Spec"]["Role"] == "manager") == (name == HOSTS[0]), f"{name}: {node['Spec']['Role']}"
        number = str(HOSTS.index(name) + 1)
        assert node["Spec"]["Labels"].get(SWARM["node_label"]) == number, node["Spec"]["Labels"]


@pytest.mark.parametrize("inst", INSTANCES, ids=[i["name"] for i in INSTANCES])
def test_each_instance_runs_on_the_vm_of_its_placement(inst):
    tasks = MANAGER.check(
        f"docker service ps {swarm_service(inst)} --filter desired-state=running "
        "--format '{{.Node}} {{.CurrentState}}'"
    ).splitlines()
    assert len(tasks) == 1, tasks
    node, state = tasks[0].split(maxsplit=1)
    assert node == host_of(inst), f"{inst['name']} runs on {node}, its placement says {host_of(inst)}"
    assert state.startswith("Running"), state
    assert VMS[node].container(inst)


@pytest.mark.parametrize("name", HOSTS)
def test_the_swarms_ports_accept_the_other_lab_vms_only(name):
    rules = VMS[name].check("iptables -w -S SHOPLAB-SWARM-INPUT").splitlines()
    from_peers = [rule for rule in rules if " -s " in rule and rule.endswith("-j RETURN")]
    accepted = {rule.split(" -s ")[1].split("/")[0] for rule in from_peers}
    peers = {VMS[other].address for other in HOSTS if other != name}
    assert accepted == peers, f"{name} accepts the Swarm's ports from {sorted(accepted)}"
    assert "-A SHOPLAB-SWARM-INPUT -i lo -j RETURN" in rules, "its own agent reaches its manager"


def test_the_managers_port_refuses_this_machine():
    """A real connection attempt from this machine (on the VM network, not a lab VM) to the manager's
    port: reset by the firewall, where a lab VM joins."""
    assert_routed_to_a_lab_vm(MANAGER.address)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((MANAGER.address, SWARM["manager_port"]), timeout=10).close()
