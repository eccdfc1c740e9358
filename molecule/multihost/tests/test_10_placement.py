"""Placement: each lab VM runs the instances topology.yml's shoplab_placement gives it, and nothing else;
the lab's secrets are one value on every VM."""

from __future__ import annotations

import pytest
from labtest import TOKEN_FILES
from mhdata import HOSTS, INSTANCES, SPAN, VMS, host_of


def test_the_scenario_spreads_one_lab_over_its_vms():
    assert len(HOSTS) == SPAN > 1
    assert {host_of(i) for i in INSTANCES} == set(HOSTS), "every VM runs part of the lab"


@pytest.mark.parametrize("name", HOSTS)
def test_each_vm_runs_the_namespaces_of_its_instances_only(name):
    found = {line.split()[0] for line in VMS[name].check("ip netns list").splitlines() if line.strip()}
    wanted = {i["namespace"] for i in INSTANCES if host_of(i) == name}
    assert found == wanted, f"{name}: namespaces {sorted(found)}, placement says {sorted(wanted)}"


@pytest.mark.parametrize("name", HOSTS)
def test_each_vm_runs_the_units_of_its_instances_only(name):
    units = {f"shoplab-{i['name']}.service": host_of(i) == name for i in INSTANCES}
    out = VMS[name].run("systemctl is-active " + " ".join(units)).stdout.split()
    states = dict(zip(units, out, strict=True))
    wrong = {unit: state for unit, state in states.items() if (state == "active") != units[unit]}
    assert not wrong, f"{name}: {wrong} (active only where placed)"


def test_the_lab_secrets_are_the_same_on_every_vm():
    """The tokens (made on the first VM) and the database password (made where PostgreSQL runs) are copied
    to the others: a product instance on one VM logs in to PostgreSQL on another, and registers with the
    registry on a third, with one value each. Compared by digest: no secret leaves a VM."""
    files = [*TOKEN_FILES["netns"].values(), "/etc/shoplab/db-password"]
    digests = {name: VMS[name].check("sha256sum " + " ".join(files)) for name in HOSTS}
    assert len(set(digests.values())) == 1, digests
