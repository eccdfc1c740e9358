"""docker mode, deployed by the converge: health, the request flow, hardening, networks, the
isolation matrix (tiered layout), and scaling the product service by hand to three instances."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import labtest
import pytest
import requests
from conftest import COMPOSE_FILE, FILTERS, LOG_DIR, PROJECT, SECRET_FILE, docker, lab_containers

PROBE_TIMEOUT = 3


def counts(topology: dict) -> dict:
    return {
        "product_instances": topology["product_instances"],
        "order_instances": topology["order_instances"],
    }


def by_service(containers: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for container in containers:
        out.setdefault(container["Config"]["Labels"]["org.shoplab.service"], []).append(container)
    return out


def wait_healthy(expected: int, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        containers = lab_containers()
        states = [c["State"].get("Health", {}).get("Status") for c in containers]
        if len(containers) == expected and all(s == "healthy" for s in states):
            return containers
        if time.monotonic() > deadline:
            names = {c["Name"].lstrip("/"): c["State"].get("Health", {}).get("Status") for c in containers}
            raise AssertionError(f"expected {expected} healthy containers, found {names}")
        time.sleep(2)


@pytest.fixture(scope="module")
def instances(topology) -> list[dict]:
    return FILTERS.shoplab_instances(
        topology["shoplab_services"], topology["shoplab_tiers"], counts(topology)
    )


@pytest.fixture(scope="module")
def containers(instances) -> list[dict]:
    return wait_healthy(len(instances))


def test_every_container_healthy_and_counted(containers, instances, topology):
    found = {name: len(group) for name, group in by_service(containers).items()}
    wanted: dict[str, int] = {}
    for instance in instances:
        wanted[instance["service"]] = wanted.get(instance["service"], 0) + 1
    assert found == wanted
    for container in containers:
        assert container["State"]["Health"]["Status"] == "healthy", container["Name"]
        compose_service = container["Config"]["Labels"]["com.docker.compose.service"]
        service = container["Config"]["Labels"]["org.shoplab.service"]
        assert compose_service == topology["shoplab_services"][service]["compose_service"]


def test_app_healthchecks_are_the_probe_and_it_tells_200_from_the_rest(containers, topology):
    for container in containers:
        service = container["Config"]["Labels"]["org.shoplab.service"]
        if topology["shoplab_services"][service]["kind"] != "app":
            continue
        port = topology["shoplab_services"][service]["port"]
        ready = f"http://127.0.0.1:{port}/ready"
        assert container["Config"]["Healthcheck"]["Test"] == ["CMD", "shoplab-probe", ready]
        name = container["Name"].lstrip("/")
        missing = subprocess.run(
            ["docker", "exec", name, "shoplab-probe", f"http://127.0.0.1:{port}/no-such-page"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
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


def test_full_flow_through_the_gateway(containers, gateway_url, topology):
    listing = requests.get(f"{gateway_url}/api/products", timeout=10)
    assert listing.status_code == 200
    products = listing.json()["items"]
    assert products, "the catalogue is empty"
    product_id = products[0]["id"]

    created = requests.post(
        f"{gateway_url}/api/orders", json={"items": [{"product_id": product_id, "quantity": 1}]}, timeout=10
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    read_back = requests.get(f"{gateway_url}/api/orders/{order_id}", timeout=10)
    assert read_back.status_code == 200
    assert read_back.json()["id"] == order_id

    postgres = by_service(containers)["postgres"][0]["Name"].lstrip("/")
    db = topology["shoplab_db_name"]
    user = topology["shoplab_db_user"]
    query = f"SELECT count(*) FROM orders WHERE id = {order_id}"
    rows = docker("exec", postgres, "psql", "-U", user, "-d", db, "-tAc", query)
    assert rows.strip() == "1"


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


def access_log(service: str) -> str:
    return f"{LOG_DIR}/{service}.access.log"


def wait_for_access_line(service: str, text: str, timeout: float = 15) -> dict:
    """The last line of `service`'s access log holding `text` (lines are written every second)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(access_log(service), encoding="utf-8") as handle:
            found = [line for line in handle if text in line]
        if found:
            return json.loads(found[-1])
        assert time.monotonic() < deadline, f"no line with {text!r} in {access_log(service)}"
        time.sleep(0.5)


def test_every_container_logs_to_a_rotated_local_log(containers):
    """docker_stack_log_driver: `local` with a size limit, not json-file's log that never rotates."""
    configs = {c["Name"].lstrip("/"): c["HostConfig"]["LogConfig"] for c in containers}
    wanted = {"Type": "local", "Config": {"max-size": "20m", "max-file": "5"}}
    wrong = {name: config for name, config in configs.items() if config != wanted}
    assert wrong == {}


def test_app_containers_append_access_lines_to_one_file_per_service_on_the_host(containers, topology):
    """docker_stack_access_log: file. The folder is mounted in every app container, and each is told
    its service's file and the rotation settings (the services rotate it: shoplab.core.logs.AccessFile)."""
    folder = os.stat(LOG_DIR)
    assert (folder.st_uid, oct(folder.st_mode & 0o777)) == (10001, "0o750")
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
    logs = subprocess.run(["docker", "logs", gateway], capture_output=True, text=True, check=True, timeout=60)
    both = logs.stdout + logs.stderr
    assert marker not in both and "shoplab.access" not in both
    assert "Booting worker" in both  # gunicorn's own lines stay in the container's log


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


def test_postgres_data_on_a_named_volume(containers):
    postgres = by_service(containers)["postgres"][0]
    volumes = [m for m in postgres["Mounts"] if m["Type"] == "volume"]
    assert [v["Name"] for v in volumes] == [f"{PROJECT}-postgres-data"]


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


def test_no_route_out_of_the_database_tier(containers, topology):
    """The database network is `internal`: nothing on it is forwarded beyond its own subnet.

    Newer engines give its containers no default route at all; Debian's 20.10 keeps the route to the
    bridge but drops everything leaving the subnet (read from iptables, no packet is sent out)."""
    internal = [t for t in topology["shoplab_tiers"].values() if t["docker_internal"]]
    assert internal, "the topology has no internal network"
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=False).stdout
    for tier in internal:
        network = json.loads(docker("network", "inspect", tier["docker_network"]))[0]
        assert network["Internal"] is True
        bridge = f"br-{network['Id'][:12]}"
        dropped = f"! -d {tier['docker_subnet']} -i {bridge} -j DROP" in rules
        for container_id in network["Containers"]:
            routes = docker("exec", container_id, "cat", "/proc/net/route").splitlines()[1:]
            default = [line for line in routes if line.split()[1] == "00000000"]
            assert not default or dropped, f"{container_id[:12]} has a default route and nothing drops it"


def _addresses(container: dict) -> dict[str, str]:
    """Docker network name -> the container's address on it."""
    return {net: spec["IPAddress"] for net, spec in container["NetworkSettings"]["Networks"].items()}


def _assert_via_lab_bridge(address: str, lab_network_ids: dict[str, str]) -> None:
    """Refuse to probe an address whose route from this host does not use a bridge of the lab."""
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True, check=True).stdout
    bridges = {f"br-{network_id[:12]}" for network_id in lab_network_ids.values()}
    assert any(f"dev {bridge}" in route for bridge in bridges), f"{address} not behind a lab bridge: {route}"


def _probe_from(container: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    """Open a TCP connection to every target from inside `container`, in parallel, timeout 3 s each."""
    script = " ".join(
        f'( timeout {PROBE_TIMEOUT} bash -c "exec 3<>/dev/tcp/{addr}/{port}" 2>/dev/null'
        f' && echo "{addr}:{port} open" || echo "{addr}:{port} closed" ) &'
        for addr, port in targets
    )
    out = docker("exec", container, "bash", "-c", f"{script} wait", timeout=60)
    result = {}
    for line in out.splitlines():
        endpoint, state = line.split()
        addr, port = endpoint.rsplit(":", 1)
        result[(addr, int(port))] = state == "open"
    assert set(result) == set(targets), f"{container}: missing probe results"
    return result


def test_isolation_matrix(containers, instances, topology):
    """Every cell of shoplab_flow_matrix(mode='docker'), observed; all wrong cells are reported."""
    if topology.get("shoplab_docker_layout", "tiered") != "tiered":
        pytest.skip("the isolation matrix applies to the tiered layout")
    services = topology["shoplab_services"]
    expected = FILTERS.shoplab_flow_matrix(
        instances, services, topology["shoplab_allowed_flows"], mode="docker"
    )

    # Instance name (product-1, ...) -> its container, in container-number order.
    container_of = {}
    for service, group in by_service(containers).items():
        names = [i["name"] for i in instances if i["service"] == service]
        container_of.update(zip(names, group, strict=True))

    network_ids = {
        tier["docker_network"]: json.loads(docker("network", "inspect", tier["docker_network"]))[0]["Id"]
        for tier in topology["shoplab_tiers"].values()
    }
    targets = {}
    for instance in instances:
        port = services[instance["service"]]["port"]
        addresses = _addresses(container_of[instance["name"]])
        targets[instance["name"]] = [(net, addr, port) for net, addr in addresses.items()]
    for endpoints in targets.values():
        for _net, addr, _port in endpoints:
            assert ipaddress.ip_address(addr).is_private
            _assert_via_lab_bridge(addr, network_ids)

    every_target = sorted({(addr, port) for endpoints in targets.values() for _n, addr, port in endpoints})

    def observe(source: str) -> tuple[str, dict]:
        return source, _probe_from(container_of[source]["Name"].lstrip("/"), every_target)

    with ThreadPoolExecutor(max_workers=4) as pool:
        observed = dict(pool.map(observe, [i["name"] for i in instances]))

    published = {
        name: {int(port.split("/")[0]) for port, binds in c["NetworkSettings"]["Ports"].items() if binds}
        for name, c in container_of.items()
    }
    wrong = []
    for cell in expected:
        source, target = cell["source"], cell["target"]
        port = services[container_of[target]["Config"]["Labels"]["org.shoplab.service"]]["port"]
        if source == "host":
            # The host reaches the lab only through published ports (the gateway on localhost).
            seen = port in published[target]
            detail = f"published={sorted(published[target])}"
        else:
            opened = {net: observed[source][(addr, p)] for net, addr, p in targets[target]}
            shared = set(container_of[source]["NetworkSettings"]["Networks"])
            seen = any(opened.values())
            # Never open through a network the source is not on (Docker's inter-network isolation).
            leaks = [net for net, is_open in opened.items() if is_open and net not in shared]
            if leaks:
                seen = "leak"
            detail = f"open={opened}"
        if seen is not cell["allowed"]:
            wrong.append(f"{source} -> {target}:{port} expected {cell['allowed']} saw {seen} ({detail})")
    print(f"isolation matrix: {len(expected)} cells, {len(wrong)} wrong")
    assert wrong == [], "\n".join(wrong)


def test_gateway_answers_on_localhost(gateway_url):
    response = requests.get(f"{gateway_url}/api/products", timeout=10)
    assert response.status_code == 200
    assert response.headers.get("X-Upstream-Instance")


def test_scale_by_hand_to_three_and_round_robin(containers, gateway_url):
    """`docker compose up --scale product-service=3 -d` by hand; the gateway reaches all three."""
    subprocess.run(
        ["docker", "compose", "-f", COMPOSE_FILE, "up", "-d", "--wait", "--scale", "product-service=3"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    scaled = lab_containers()
    products = by_service(scaled)["product"]
    assert len(products) == 3
    wanted = {c["Config"]["Hostname"] for c in products}
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while seen != wanted and time.monotonic() < deadline:
        response = requests.get(f"{gateway_url}/api/products", timeout=10)
        assert response.status_code == 200
        seen.add(response.headers["X-Upstream-Instance"])
        time.sleep(0.2)
    assert seen == wanted
    # The three containers share product.access.log: each one's lines are there, whole.
    marker = labtest.unknown_product_path()
    for _ in range(12):
        assert requests.get(gateway_url + marker, timeout=10).status_code == 404
    deadline = time.monotonic() + 15
    while True:
        with open(access_log("product"), encoding="utf-8") as handle:
            writers = {json.loads(line)["instance"] for line in handle if marker in line}
        if writers == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert writers == wanted
