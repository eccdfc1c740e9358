"""Where the services' lines go: each container's log rotated by the engine, access lines appended to
one file per service on the host (not docker logs)."""

from __future__ import annotations

import labtest
import requests
from conftest import LOG_DIR, by_service, wait_for_access_line
from labhost import LAB


def test_every_container_logs_to_a_rotated_local_log(containers):
    """docker_stack_log_driver: `local` with a size limit, not json-file's log that never rotates."""
    configs = {c["Name"].lstrip("/"): c["HostConfig"]["LogConfig"] for c in containers}
    wanted = {"Type": "local", "Config": {"max-size": "20m", "max-file": "5"}}
    wrong = {name: config for name, config in configs.items() if config != wanted}
    assert wrong == {}


def test_app_containers_append_access_lines_to_one_file_per_service_on_the_host(containers, topology):
    """docker_stack_access_log: file. The folder is mounted in every app container, and each is told
    its service's file and the rotation settings (the services rotate it: shoplab.core.logs.AccessFile)."""
    uid, mode = LAB.run("stat", "-c", "%u %a", LOG_DIR, check=True).stdout.split()
    assert (int(uid), oct(int(mode, 8) & 0o777)) == (10001, "0o750")
    services = topology["shoplab_services"]
    for container in containers:
        service = container["Config"]["Labels"]["org.shoplab.service"]
        env = dict(entry.split("=", 1) for entry in container["Config"]["Env"] or [])
        mounts = {m["Destination"]: m for m in container["Mounts"]}
        if services[service]["kind"] != "app":
            assert "/var/log/shoplab" not in mounts, container["Name"]
            continue
        assert env["ACCESS_LOG_FILE"] == f"/var/log/shoplab/{service}.access.log", container["Name"]
        assert (env["ACCESS_LOG_MAX_SIZE"], env["ACCESS_LOG_KEEP"]) == ("64M", "4"), container["Name"]
        mount = mounts["/var/log/shoplab"]
        assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", LOG_DIR, True), container["Name"]


def test_a_request_is_in_the_gateway_and_product_files_and_not_in_docker_logs(containers, gateway_url):
    marker = labtest.unknown_product_path()
    response = requests.get(gateway_url + marker, timeout=10)
    assert response.status_code == 404
    line = wait_for_access_line("gateway", marker)
    assert (line["logger"], line["method"], line["status"]) == ("shoplab.access", "GET", 404)
    product = wait_for_access_line("product", marker)
    assert product["instance"] == response.headers["X-Upstream-Instance"]
    gateway = by_service(containers)["gateway"][0]["Name"].lstrip("/")
    logs = LAB.run("docker", "logs", gateway, check=True, timeout=60)
    both = logs.stdout + logs.stderr
    assert marker not in both and "shoplab.access" not in both
    assert "Booting worker" in both  # gunicorn's own lines stay in the container's log
