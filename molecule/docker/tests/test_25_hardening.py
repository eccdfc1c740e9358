"""Hardening from `docker inspect` (read-only, no capabilities, no new privileges, not root, limits,
restart), CPU limits and scheduling, bad limits refused, the database password and the lab's tokens only
in secret files."""

from __future__ import annotations

import json
import os
import subprocess

import labtest
import pytest
from conftest import SECRET_FILE, lab_containers

HARDENING = ["read_only", "cap_drop", "no_new_privileges", "non_root", "limits", "restart"]


@pytest.mark.parametrize("check", HARDENING)
def test_hardening_from_docker_inspect(containers, check):
    wrong = []
    for container in containers:
        host = container["HostConfig"]
        name = container["Name"].lstrip("/")
        if check == "read_only" and not host["ReadonlyRootfs"]:
            wrong.append(name)
        if check == "cap_drop" and (
            [c.upper() for c in host.get("CapDrop") or []] not in (["ALL"], ["CAP_ALL"]) or host.get("CapAdd")
        ):
            wrong.append(f"{name}: drop {host.get('CapDrop')} add {host.get('CapAdd')}")
        if check == "no_new_privileges" and not any(
            opt.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges")
            for opt in host.get("SecurityOpt") or []
        ):
            wrong.append(f"{name}: {host.get('SecurityOpt')}")
        if check == "non_root":
            user = container["Config"]["User"].split(":")[0]
            if user in ("", "0", "root"):
                wrong.append(f"{name}: user {user!r}")
        limited = host["Memory"] > 0 and host["NanoCpus"] > 0 and (host["PidsLimit"] or 0) > 0
        if check == "limits" and not limited:
            wrong.append(f"{name}: mem {host['Memory']} cpu {host['NanoCpus']} pids {host['PidsLimit']}")
        if check == "restart" and host["RestartPolicy"]["Name"] in ("", "no"):
            wrong.append(f"{name}: {host['RestartPolicy']}")
    assert wrong == []


def test_app_containers_may_use_every_cpu_datastores_one(containers, topology):
    """docker_stack_limits: app `cpus: all` (no throttling, like the netns units), datastores 1.00."""
    cpus = len(os.sched_getaffinity(0))
    kinds = {name: svc["kind"] for name, svc in topology["shoplab_services"].items()}
    found = {c["Config"]["Labels"]["org.shoplab.service"]: c["HostConfig"]["NanoCpus"] for c in containers}
    wanted = {name: (cpus if kinds[name] == "app" else 1) * 10**9 for name in found}
    assert found == wanted


def test_every_thread_runs_the_topologys_cpu_scheduling_policy(containers, topology):
    """`cpu_scheduling` in the topology, through `chrt --batch 0` before the image's entrypoint: SCHED_BATCH
    (ps: B) behind the gateway, SCHED_OTHER (TS) for the rest, every process and thread of the container."""
    services = topology["shoplab_services"]
    for container in containers:
        name = container["Config"]["Labels"]["org.shoplab.service"]
        pid = container["State"]["Pid"]
        listed = subprocess.run(["ps", "-L", "-o", "cls=", "--ppid", str(pid), "-p", str(pid)],
                                capture_output=True, text=True, check=True)  # fmt: skip
        wanted = {"B"} if services[name].get("cpu_scheduling", "other") == "batch" else {"TS"}
        assert set(listed.stdout.split()) == wanted, container["Name"]


def test_bad_limits_are_refused_before_anything_changes(containers):
    before = sorted(c["Id"] for c in lab_containers())
    bad = {"app": {"cpus": "0", "memory": "256M", "pids": 1024}, "datastore": {"cpus": "1", "memory": "512M"}}
    result = labtest.playbook("site.yml", "docker", "-e", json.dumps({"docker_stack_limits": bad}))
    assert result.returncode != 0
    assert "docker_stack_limits must give app and datastore each cpus" in result.stdout, labtest.tail(result)
    assert sorted(c["Id"] for c in lab_containers()) == before


def test_database_password_only_in_a_secret_file(host, containers):
    secret = host.file(SECRET_FILE)
    assert secret.exists and secret.user == "root" and secret.mode == 0o640
    password = secret.content_string.strip()
    assert len(password) >= 32
    for container in containers:
        env = container["Config"]["Env"] or []
        assert not any(password in entry for entry in env), container["Name"]
        service = container["Config"]["Labels"]["org.shoplab.service"]
        if service in ("product", "order", "postgres"):
            secrets = [m for m in container["Mounts"] if m["Destination"].startswith("/run/secrets/")]
            assert secrets, container["Name"]


def test_the_tokens_are_secret_files_held_only_by_who_needs_them(host, containers, topology):
    tokens = {}
    for name, path in labtest.TOKEN_FILES["docker"].items():
        secret = host.file(path)
        assert secret.exists and secret.user == "root" and secret.mode == 0o640, path
        tokens[name] = secret.content_string.strip()
        assert len(tokens[name]) >= 32
    # Which Compose secret each service mounts: the registry token for the registry and the instances that
    # register, the operator token for the services holding the data; the gateway and datastores neither.
    both = {"registry", "operator"}
    wanted = {"registry": {"registry"}, "product": both, "order": both}
    for container in containers:
        env = container["Config"]["Env"] or []
        assert not any(token in entry for token in tokens.values() for entry in env), container["Name"]
        service = container["Config"]["Labels"]["org.shoplab.service"]
        tokens_mounted = [
            m["Destination"] for m in container["Mounts"] if m["Destination"].endswith("-token")
        ]
        mounted = {d.removeprefix("/run/secrets/").removesuffix("-token") for d in tokens_mounted}
        assert mounted == wanted.get(service, set()), container["Name"]
        if service == "gateway":
            backend = topology["shoplab_tiers"]["backend"]["docker_subnet"]
            assert f"GATEWAY_ALLOWED_NETWORKS={backend}" in env
