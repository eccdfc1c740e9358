"""docker mode as the topology data says: every container healthy and counted, the probe as the
apps' healthcheck, no builder image left, the networks and aliases, PostgreSQL's named volume."""

from __future__ import annotations

import json

from conftest import PROJECT, by_service, docker
from labhost import LAB


def test_every_container_healthy_and_counted(containers, instances, docker_instances):
    """One Compose service and one container per instance, named as Compose names a replica."""
    found = {name: len(group) for name, group in by_service(containers).items()}
    wanted: dict[str, int] = {}
    for instance in instances:
        wanted[instance["service"]] = wanted.get(instance["service"], 0) + 1
    assert found == wanted
    expected = {i["name"]: i for i in docker_instances}
    for container in containers:
        assert container["State"]["Health"]["Status"] == "healthy", container["Name"]
        labels = container["Config"]["Labels"]
        instance = expected[labels["org.shoplab.instance"]]
        assert labels["org.shoplab.service"] == instance["service"]
        assert labels["com.docker.compose.service"] == instance["compose_service"]
        assert container["Name"] == f"/{PROJECT}-{instance['container_suffix']}"


def test_app_healthchecks_are_the_probe_and_it_tells_200_from_the_rest(containers, topology):
    for container in containers:
        service = container["Config"]["Labels"]["org.shoplab.service"]
        if topology["shoplab_services"][service]["kind"] != "app":
            continue
        port = topology["shoplab_services"][service]["port"]
        ready = f"http://127.0.0.1:{port}/ready"
        assert container["Config"]["Healthcheck"]["Test"] == ["CMD", "shoplab-probe", ready]
        name = container["Name"].lstrip("/")
        missing = LAB.run(
            "docker", "exec", name, "shoplab-probe", f"http://127.0.0.1:{port}/no-such-page", timeout=30
        )
        assert missing.returncode == 1, (name, missing.stderr)
        assert "HTTP 404" in missing.stderr
        docker("exec", name, "shoplab-probe", ready)  # raises unless it exits 0


def test_no_builder_stage_image_left_behind(containers):
    # The multi-stage build leaves its builder stage untagged; the role removes it after each build.
    assert (
        docker("images", "-q", "--filter", "dangling=true", "--filter", "label=org.shoplab.stage=builder")
        == ""
    )


def test_networks_follow_the_topology(containers, topology, service_networks):
    for tier in topology["shoplab_tiers"].values():
        network = json.loads(docker("network", "inspect", tier["docker_network"]))[0]
        assert [c["Subnet"] for c in network["IPAM"]["Config"]] == [tier["docker_subnet"]]
        assert network["Internal"] is bool(tier["docker_internal"])
    for container in containers:
        service = container["Config"]["Labels"]["org.shoplab.service"]
        joined = sorted(container["NetworkSettings"]["Networks"])
        assert joined == service_networks[service], container["Name"]
        hostname = topology["shoplab_services"][service]["hostname"]
        for network in container["NetworkSettings"]["Networks"].values():
            assert hostname in (network.get("Aliases") or []), container["Name"]


def test_postgres_data_on_a_named_volume(containers):
    postgres = by_service(containers)["postgres"][0]
    volumes = [m for m in postgres["Mounts"] if m["Type"] == "volume"]
    assert [v["Name"] for v in volumes] == [f"{PROJECT}-postgres-data"]
