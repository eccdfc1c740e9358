"""Last: `state=absent` removes every container and network of the lab, and keeps the data volume."""

from __future__ import annotations

from conftest import LOG_DIR, PROJECT, docker, lab_containers
from labhost import LAB
from labtest import tail


def test_state_absent_leaves_nothing(topology):
    result = LAB.playbook("site.yml", "docker", "-e", "state=absent")
    assert result.returncode == 0, tail(result)
    assert "Stop and remove the containers and networks" in result.stdout, tail(result)

    assert lab_containers() == []
    assert not LAB.exists(LOG_DIR)  # the access logs go with the containers
    names = [tier["docker_network"] for tier in topology["shoplab_tiers"].values()]
    names.append(topology["shoplab_flat_network"]["docker_network"])
    left = docker("network", "ls", "--format", "{{.Name}}").split()
    assert [n for n in left if n in names] == []
    project_networks = docker(
        "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).split()
    assert project_networks == []
    # The lab's firewall goes too: no chain of its own, no jump to one, no boot unit.
    for table in ("filter", "nat"):
        rules = LAB.run("iptables", "-w", "-t", table, "-S", check=True)
        assert "SHOPLAB-DOCKER" not in rules.stdout, rules.stdout
    assert not LAB.exists("/usr/local/sbin/shoplab-docker-firewall")
    assert not LAB.exists("/etc/systemd/system/shoplab-docker-firewall.service")
    # Volumes go only when asked (docker_stack_remove_volumes=true).
    volume = f"{PROJECT}-postgres-data"
    assert volume in docker("volume", "ls", "-q", "--filter", f"name={volume}").split()
