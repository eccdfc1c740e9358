"""Last: `state=absent` removes every container and network of the lab, and keeps the data volume."""

from __future__ import annotations

import os
import subprocess

from conftest import PROJECT, PROJECT_DIR, docker, lab_containers


def test_state_absent_leaves_nothing(topology):
    playbook = ["site.yml"]
    if not (PROJECT_DIR / "playbooks" / "netns.yml").exists():
        playbook = ["playbooks/preflight.yml", "playbooks/docker.yml"]
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "inventory/hosts.yml",
            *playbook,
            "-e",
            "mode=docker",
            "-e",
            "state=absent",
        ],
        cwd=PROJECT_DIR,
        # The project's own configuration, not the one Molecule exports for its scenario.
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"),
            "ANSIBLE_FILTER_PLUGINS": str(PROJECT_DIR / "plugins" / "filter"),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    tail = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, tail
    assert "Stop and remove the containers and networks" in result.stdout, tail

    assert lab_containers() == []
    names = [tier["docker_network"] for tier in topology["shoplab_tiers"].values()]
    names.append(topology["shoplab_flat_network"]["docker_network"])
    left = docker("network", "ls", "--format", "{{.Name}}").split()
    assert [n for n in left if n in names] == []
    project_networks = docker(
        "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).split()
    assert project_networks == []
    # Volumes go only when asked (docker_stack_remove_volumes=true).
    volume = f"{PROJECT}-postgres-data"
    assert volume in docker("volume", "ls", "-q", "--filter", f"name={volume}").split()
