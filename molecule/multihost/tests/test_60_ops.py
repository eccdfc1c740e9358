"""The operations playbooks that read a lab over several hosts: status (each VM reports its own part, its
VXLAN ports to the others; the registry's VM lists every instance of the lab) and diagram (one picture of
the three VMs, a cluster per VM, each tier's VXLAN ports joined across them)."""

from __future__ import annotations

import re

import labvms
from labops import FAIL_ON_PROBLEMS
from labtest import tail
from mhdata import HOSTS, INSTANCES, SPAN, TIERS, VXLAN, host_of, instance


def playbook(name: str, *extra: str):
    return labvms.scenario_playbook(name, "netns", *extra)


def test_status_reports_each_vm_its_vxlan_and_no_problem():
    result = playbook("status.yml", *FAIL_ON_PROBLEMS)
    assert result.returncode == 0, tail(result)
    for number, name in enumerate(HOSTS, start=1):
        assert (
            f"Shoplab netns lab on {name} (lab host {number} of {SPAN}: {', '.join(HOSTS)})" in result.stdout
        )
    # Every VM's VXLAN section names each tier's port with its VNI, and the registry's VM lists every
    # product and order instance of the lab (a missing one would be a problem, which fails the play).
    for tier, data in TIERS.items():
        assert (
            len(re.findall(rf"{VXLAN['device_prefix']}{tier} +VNI {data['vni']} from ", result.stdout))
            == SPAN
        )
    registry_vm = HOSTS[instance("registry")["lab_host"] - 1]
    assert result.stdout.count("(the registry runs on lab host") == SPAN - 1, registry_vm
    assert "No problem found" in result.stdout
    assert "changed=0" in result.stdout


def test_diagram_draws_the_three_vms_and_their_vxlan(tmp_path):
    result = playbook(
        "diagram.yml", "-e", f"lab_diagram_dir={tmp_path}", "-e", "lab_diagram_fail_on_differences=true"
    )
    assert result.returncode == 0, tail(result)
    dot = (tmp_path / f"topology-netns-{SPAN}hosts.dot").read_text()
    assert f"over {SPAN} lab hosts" in dot
    for number, name in enumerate(HOSTS, start=1):
        assert f'"cluster_host_{number}"' in dot and f"lab host {number}: {name}" in dot
    for inst in INSTANCES:
        assert inst["namespace"] in dot and inst["address"] in dot, f"{inst['name']} on {host_of(inst)}"
    joined = re.findall(r'"n_h\d_vx-\w+" -> "n_h\d_vx-\w+" \[dir=both', dot)
    assert len(joined) == len(TIERS) * SPAN * (SPAN - 1) // 2
    assert "<svg" in (tmp_path / f"topology-netns-{SPAN}hosts.svg").read_text()
