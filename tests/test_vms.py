"""The lab VMs derived from group_vars/all/lab_vms.yml (plugins/filter/shoplab_vms.py)."""

from pathlib import Path

import pytest
import yaml
from shoplab_vms import VmNetworkError, shoplab_ssh_argv, shoplab_vm_netmask, shoplab_vms

DATA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "group_vars" / "all" / "lab_vms.yml").read_text()
)
NETWORK = DATA["shoplab_vm_network"]
PREFIX = DATA["shoplab_vm_name_prefix"]


def test_vm_n_gets_the_fixed_address_and_mac_of_its_index():
    vms = shoplab_vms(NETWORK, 2, PREFIX)
    assert [vm["name"] for vm in vms] == [f"{PREFIX}-1", f"{PREFIX}-2"]
    assert vms[0]["address"].endswith(f".{NETWORK['first_offset']}")
    assert vms[1]["address"].endswith(f".{NETWORK['first_offset'] + 1}")
    assert vms[1]["mac"] == f"{NETWORK['mac_prefix']}:02"


def test_every_reserved_vm_is_a_distinct_host_address_other_than_the_host():
    vms = shoplab_vms(NETWORK, NETWORK["max_vms"], PREFIX)
    addresses = {vm["address"] for vm in vms}
    assert len(addresses) == NETWORK["max_vms"]
    assert NETWORK["host_address"] not in addresses
    assert len({vm["mac"] for vm in vms}) == NETWORK["max_vms"]


def test_the_netmask_comes_from_the_subnet():
    assert (
        shoplab_vm_netmask({**NETWORK, "subnet": "10.9.0.0/16", "host_address": "10.9.0.1"}) == "255.255.0.0"
    )


@pytest.mark.parametrize("count", [0, "0", "-1", "1.5", "two", ""])
def test_a_count_that_is_not_a_whole_number_of_at_least_one_is_refused(count):
    with pytest.raises(VmNetworkError, match="whole number >= 1"):
        shoplab_vms(NETWORK, count, PREFIX)


def test_more_vms_than_the_network_reserves_are_refused():
    with pytest.raises(VmNetworkError, match="max_vms"):
        shoplab_vms(NETWORK, NETWORK["max_vms"] + 1, PREFIX)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"host_address": "10.0.0.1"}, "host_address"),
        ({"bridge": "a-bridge-name-too-long"}, "bridge"),
        ({"mac_prefix": "52:54:00"}, "mac_prefix"),
        ({"first_offset": 250}, "first_offset"),
    ],
)
def test_bad_network_data_is_refused_naming_the_setting(change, names):
    with pytest.raises(VmNetworkError, match=names):
        shoplab_vms({**NETWORK, **change}, NETWORK["max_vms"], PREFIX)


def test_the_vm_image_bakes_in_every_package_netns_mode_and_capture_install():
    """The image's lab packages (lab_vms.yml) are what the netns roles install, read from the roles
    themselves, so a package a role starts to need is never silently missing from a fresh VM."""
    roles = Path(__file__).resolve().parents[1] / "roles"
    needed = {"tcpdump"}  # lab_capture installs it by name (roles/lab_capture/tasks/capture.yml)
    for role in ["netns_network", "netns_firewall", "netns_datastores", "netns_services"]:
        role_vars = yaml.safe_load((roles / role / "vars" / "main.yml").read_text())
        needed |= set(role_vars[f"_{role}_packages"])
    assert needed - set(DATA["shoplab_vm_lab_packages"]) == set()
    assert "tcpdump" in (roles / "lab_capture" / "tasks" / "capture.yml").read_text()
    assert "docker.io" not in DATA["shoplab_vm_lab_packages"]  # dockerd would change FORWARD


def test_ssh_argv_logs_in_as_the_inventory_says():
    host = {
        "ansible_host": "192.0.2.11",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": "/keys/lab_ed25519",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    }
    argv = shoplab_ssh_argv(host, "vm-1")
    assert argv[0] == "ssh"
    assert argv[1:5] == ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    assert argv[argv.index("-i") + 1] == "/keys/lab_ed25519"
    assert argv[argv.index("-p") + 1] == "22"
    assert "BatchMode=yes" in argv
    assert argv[-1] == "root@192.0.2.11"


def test_ssh_argv_defaults_to_the_host_name_and_molecules_key_variable():
    argv = shoplab_ssh_argv({"ansible_private_key_file": "/k", "ansible_port": 2222}, "vm-2")
    assert argv[argv.index("-i") + 1] == "/k"
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[-1] == "root@vm-2"
