"""lab_status's collectors (roles/lab_status/files) section by section, on recorded command outputs.

A fake `run` answers each command the way a lab host does; nothing runs. What the sections parse, the
problems and notes they name, and the lines they print (the Molecule status tests run them live).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import shoplab_topology as topo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "lab_status" / "files"))

import status_docker
import status_netns
import statuslib

DATA = topo.load_topology()
SERVICES, TIERS, FLOWS = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_allowed_flows"]
INSTANCES = topo.shoplab_instances(SERVICES, TIERS, topo.default_counts(DATA))
REGISTERED = ["product", "order"]
IPTABLES_HEADER = "    pkts      bytes target     prot opt in     out     source      destination"
ACTIVE = "ActiveState=active\nSubState=running\nNRestarts=0\nResult=success\n"
INACTIVE = "ActiveState=inactive\nSubState=dead\nNRestarts=0\nResult=success\n"


def registry_answer(names: list[str]) -> str:
    """The registry's GET /services listing these instance ids (`product-1` is a product)."""
    services: dict[str, list] = {}
    for name in names:
        services.setdefault(name.split("-")[0], []).append(
            {"instance_id": name, "address": "10.0.0.1", "port": 5001, "last_heartbeat_seconds_ago": 1.25}
        )
    return json.dumps({"services": services})


class FakeHost:
    """A `run` that answers from a table of commands (argv -> return code, output); a command that
    starts with one of `prefixes` (the first that fits) is looked up by that prefix."""

    prefixes: tuple[tuple[str, ...], ...] = ()

    def answers(self) -> dict[tuple[str, ...], tuple[int, str]]:
        raise NotImplementedError

    def __call__(self, *argv: str, timeout: float = 10) -> tuple[int, str]:
        key = next((p for p in self.prefixes if argv[: len(p)] == p), argv)
        table = self.answers()
        assert key in table, f"unexpected command {argv}"
        return table[key]


# --- netns -----------------------------------------------------------------------------------------


def netns_expected() -> dict:
    """What roles/lab_status/vars/main.yml hands the netns collector."""
    return {
        "instances": INSTANCES,
        "tiers": TIERS,
        "chain_prefix": "SHOPLAB",
        "registered_services": REGISTERED,
    }


class FakeNetnsHost(FakeHost):
    """The answers of a healthy netns lab host; a test breaks what it needs to."""

    prefixes = (("journalctl",),)

    def __init__(self, instances: list[dict] | None = None, vxlan: dict | None = None) -> None:
        self.instances = INSTANCES if instances is None else instances  # the ones this host runs
        self.vxlan = vxlan  # a lab over several hosts: {tier: (VNI, local, peers)} of its VXLAN ports
        self.missing: set[str] = set()  # namespaces that do not exist
        self.silent: set[str] = set()  # namespaces where nothing listens
        self.down: set[str] = set()  # instances whose unit is inactive
        self.registered = [i["name"] for i in INSTANCES if i["service"] in REGISTERED]
        self.registry_up = True
        self.firewall = True
        self.extra_namespaces: list[str] = []

    def answers(self) -> dict[tuple[str, ...], tuple[int, str]]:
        running = [i for i in self.instances if i["namespace"] not in self.missing]
        vx_ports = [{"ifname": f"vx-{tier}", "master": TIERS[tier]["bridge"]} for tier in (self.vxlan or {})]
        host_addrs = [
            {
                "ifname": t["bridge"],
                "addr_info": [{"family": "inet", "local": t["host_address"], "prefixlen": 24}],
            }
            for t in TIERS.values()
        ]
        table = {
            ("ip", "-j", "link", "show", "type", "bridge"): (
                0,
                json.dumps([{"ifname": t["bridge"], "operstate": "UP"} for t in TIERS.values()]),
            ),
            ("ip", "-j", "addr"): (0, json.dumps(host_addrs)),
            ("bridge", "-j", "link"): (
                0,
                json.dumps([{"ifname": i["veth_host"], "master": i["bridge"]} for i in running] + vx_ports),
            ),
            ("ip", "-j", "netns", "list"): (
                0,
                json.dumps([{"name": n} for n in [i["namespace"] for i in running] + self.extra_namespaces]),
            ),
            ("iptables", "-w", "-S"): (0, "-P FORWARD DROP\n-N SHOPLAB-FORWARD\n" if self.firewall else ""),
            ("iptables", "-w", "-L", "SHOPLAB-FORWARD", "-n", "-v", "-x"): (
                0,
                "Chain SHOPLAB-FORWARD (1 references)\n"
                f"{IPTABLES_HEADER}\n"
                "      12     3456 ACCEPT     6    --  *      *       172.20.0.10 172.21.0.20"
                "  tcp dpt:5001 /* gateway -> product-1 */\n"
                "       0        0 REJECT     0    --  *      *       0.0.0.0/0   0.0.0.0/0\n",
            ),
            ("iptables", "-w", "-t", "nat", "-S"): (0, "-P PREROUTING ACCEPT\n"),
            ("cat", statuslib.CONNTRACK_COUNT): (0, "42\n"),
            ("cat", statuslib.CONNTRACK_MAX): (0, "262144\n"),
            ("systemctl", "is-active", "shoplab-netns.service"): (0, "active\n"),
            ("systemctl", "is-active", "shoplab-firewall.service"): (0, "active\n"),
            ("journalctl",): (1, ""),
            (
                "ip", "netns", "exec", "ns-registry", "curl", "-sS", "-m", "3", "http://172.21.0.10:5000/services",
            ): (
                (0, registry_answer(self.registered))
                if self.registry_up
                else (7, "curl: (7) Failed to connect to 172.21.0.10 port 5000\n")
            ),
        }  # fmt: skip
        for tier, (_vni, _local, peers) in (self.vxlan or {}).items():
            table[("bridge", "-j", "fdb", "show", "dev", f"vx-{tier}")] = (
                0,
                json.dumps(
                    [{"mac": "02:53:4c:15:00:14", "dst": peers[0], "state": "permanent"}]
                    + [{"mac": "00:00:00:00:00:00", "dst": peer, "flags": ["self"]} for peer in peers]
                ),
            )
        table[("ip", "-d", "-j", "link", "show", "type", "vxlan")] = (
            0,
            json.dumps(
                [
                    {
                        "ifname": f"vx-{tier}",
                        "mtu": 1450,
                        "master": TIERS[tier]["bridge"],
                        "linkinfo": {
                            "info_kind": "vxlan",
                            "info_data": {"id": vni, "local": local, "port": 4789},
                        },
                    }
                    for tier, (vni, local, _peers) in (self.vxlan or {}).items()
                ]
            ),
        )
        for inst in self.instances:
            ns = inst["namespace"]
            lo = {"family": "inet", "local": "127.0.0.1", "prefixlen": 8}
            own = {"family": "inet", "local": inst["address"], "prefixlen": 24}
            routes = [{"dst": "default", "gateway": inst["gateway"]}, {"dst": f"{inst['gateway'][:-1]}0/24"}]
            listens = (
                "" if ns in self.silent else f"LISTEN 0 128 {inst['address']}:{inst['port']} 0.0.0.0:*\n"
            )
            unit = f"shoplab-{inst['name']}.service"
            table[("ip", "-n", ns, "-j", "addr")] = (
                0,
                json.dumps([{"ifname": "lo", "addr_info": [lo]}, {"ifname": "eth0", "addr_info": [own]}]),
            )
            table[("ip", "-n", ns, "-j", "route")] = (0, json.dumps(routes))
            table[("ip", "netns", "exec", ns, "ss", "-Hltn")] = (0, listens)
            table[("systemctl", "show", unit, "-p", "ActiveState,SubState,NRestarts,Result")] = (
                0,
                INACTIVE if inst["name"] in self.down else ACTIVE,
            )
        return table


def test_netns_healthy_lab_has_every_section_and_no_problem():
    report = status_netns.collect(FakeNetnsHost(), netns_expected())
    assert [title for title, _ in report.sections] == [
        "Bridges and their ports (ip link, bridge link)",
        "Namespaces: addresses, routes, listening sockets (ip netns exec … ip addr / ip route / ss)",
        "iptables: the lab's chains with packet counters (iptables -L -n -v)",
        "Connection tracking (conntrack -C)",
        "systemd units (systemctl show) and recent failures",
        "Registry contents (GET http://172.21.0.10:5000/services)",
    ]
    assert report.problems == []
    assert report.notes == []
    document = json.loads(report.to_json())
    assert list(document) == ["sections", "problems", "notes", "state"]
    assert document["state"]["flows"] == [
        {"from": "gateway", "to": "product-1", "packets": 12, "bytes": 3456, "port": 5001}
    ]
    assert document["state"]["conntrack"] == "42"
    assert document["state"]["registry"]["product"] == ["product-1", "product-2"]


def test_netns_section_lines():
    bodies = dict(status_netns.collect(FakeNetnsHost(), netns_expected()).sections)
    bridges = bodies["Bridges and their ports (ip link, bridge link)"].splitlines()
    assert bridges[1] == (
        "br-backend   UP    172.21.0.1/24    "
        "ports: ve-order-1 ve-order-2 ve-product-1 ve-product-2 ve-registry"
    )
    namespaces = bodies[
        "Namespaces: addresses, routes, listening sockets (ip netns exec … ip addr / ip route / ss)"
    ]
    assert namespaces.splitlines()[2] == (
        "ns-product-1     172.21.0.20/24   on br-backend   "
        "routes: default via 172.21.0.1, 172.21.0.0/24; listening: 172.21.0.20:5001"
    )
    assert bodies["Connection tracking (conntrack -C)"] == "42 tracked connections (max 262144)"
    units = bodies["systemd units (systemctl show) and recent failures"].splitlines()
    assert units[0] == "shoplab-gateway.service      active/running  result success  restarts 0"
    assert units[-8:] == [
        "shoplab-netns.service        active",
        "shoplab-firewall.service     active",
        "",
        "Recent warnings and failures (journalctl -p warning, 30 min):",
        "(none)",
        "",
        "The services' warnings and errors (their JSON lines, 30 min):",
        "(none)",
    ]
    registry = bodies["Registry contents (GET http://172.21.0.10:5000/services)"].splitlines()
    assert registry[0] == "order    order-1      10.0.0.1:5001  heartbeat 1.2s ago"


def test_netns_problems_name_what_is_wrong():
    host = FakeNetnsHost()
    host.missing = {"ns-order-2"}
    host.silent = {"ns-product-2"}
    host.down = {"product-2"}
    host.registered.remove("product-2")
    host.registered.append("product-9")
    host.extra_namespaces = ["ns-product-3"]
    host.firewall = False
    report = status_netns.collect(host, netns_expected())
    assert report.problems == [
        "nothing listens on port 5001 in ns-product-2 (product-2)",
        "namespace ns-order-2 (order-2) is missing",
        "no SHOPLAB-* iptables chain: the firewall is not applied",
        "unit shoplab-product-2.service is inactive (product-2 is down)",
        "product-2 is not registered with the registry",
    ]
    assert report.notes == [
        "namespace ns-product-3 runs but the data does not list it",
        "the registry lists product product-9, which the data does not",
    ]
    namespaces = next(body for title, body in report.sections if title.startswith("Namespaces"))
    assert "ns-order-2       MISSING" in namespaces.splitlines()


def test_netns_registry_that_does_not_answer():
    host = FakeNetnsHost()
    host.registry_up = False
    report = statuslib.Report(state={"registry": {}})
    status_netns.registry(host, netns_expected(), report)
    assert report.problems == ["the registry at 172.21.0.10:5000 does not answer"]
    assert report.sections == [
        [
            "Registry contents (GET http://172.21.0.10:5000/services)",
            "curl: (7) Failed to connect to 172.21.0.10 port 5000",
        ]
    ]


# --- netns, a lab over three hosts ---------------------------------------------------------------

LAB_HOSTS = ["shoplab-vm-1", "shoplab-vm-2", "shoplab-vm-3"]
UNDERLAY = ["192.168.150.11", "192.168.150.12", "192.168.150.13"]
LAB3 = topo.shoplab_instances(SERVICES, TIERS, topo.default_counts(DATA), DATA["shoplab_placement"], 3)


def lab3_expected(number: int) -> dict:
    """What roles/lab_status hands the netns collector on lab host `number` of three."""
    own = UNDERLAY[number - 1]
    return {
        "instances": [i for i in LAB3 if i["lab_host"] == number],
        "lab_instances": LAB3,
        "tiers": TIERS,
        "chain_prefix": "SHOPLAB",
        "registered_services": REGISTERED,
        "host": {"number": number, "count": 3, "names": LAB_HOSTS},
        "vxlan": {
            "peers": [a for a in UNDERLAY if a != own],
            "local": own,
            "device_prefix": "vx-",
            "port": 4789,
            "mtu": 1450,
        },
    }


def lab3_host(number: int) -> FakeNetnsHost:
    """Lab host `number` of three, healthy: its instances, and a VXLAN port per tier to the other two."""
    own = UNDERLAY[number - 1]
    host = FakeNetnsHost(
        [i for i in LAB3 if i["lab_host"] == number],
        {name: (tier["vni"], own, [a for a in UNDERLAY if a != own]) for name, tier in TIERS.items()},
    )
    host.registered = [i["name"] for i in LAB3 if i["service"] in REGISTERED]
    return host


def test_netns_lab_host_of_several_reports_its_vxlan_and_no_problem():
    report = status_netns.collect(lab3_host(2), lab3_expected(2))
    assert report.problems == []
    assert report.notes == []
    bodies = dict(report.sections)
    assert list(bodies)[:2] == [
        "Bridges and their ports (ip link, bridge link)",
        "VXLAN to the other lab hosts (ip -d link show type vxlan, bridge fdb)",
    ]
    assert bodies["VXLAN to the other lab hosts (ip -d link show type vxlan, bridge fdb)"].splitlines()[
        1
    ] == (
        "vx-backend   VNI 21 from 192.168.150.12:4789 mtu 1450 on br-backend; "
        "floods to 192.168.150.11, 192.168.150.13; 1 instance MAC(s) pinned to a peer"
    )
    assert bodies["Registry contents"] == "(the registry runs on lab host 1, shoplab-vm-1: see its report)"
    state = json.loads(report.to_json())["state"]
    assert sorted(state["namespaces"]) == ["ns-order-1", "ns-product-1"]
    assert state["vxlan"]["vx-database"]["floods_to"] == ["192.168.150.11", "192.168.150.13"]


def test_netns_lab_host_of_several_names_what_its_vxlan_lacks():
    host = lab3_host(2)
    host.vxlan["backend"] = (99, UNDERLAY[1], [UNDERLAY[0]])
    del host.vxlan["database"]
    report = status_netns.collect(host, lab3_expected(2))
    assert report.problems == [
        "VXLAN port vx-backend: vni is 99, the data says 21",
        "VXLAN port vx-backend: floods_to is ['192.168.150.11'], "
        "the data says ['192.168.150.11', '192.168.150.13']",
        "VXLAN port vx-database (br-database's port to the other lab hosts) is missing",
    ]


def test_netns_registry_host_checks_every_instance_of_the_lab():
    host = lab3_host(1)
    host.registered.remove("product-2")  # runs on host 3
    report = status_netns.collect(host, lab3_expected(1))
    assert report.problems == ["product-2 is not registered with the registry"]
    assert sorted(json.loads(report.to_json())["state"]["namespaces"]) == ["ns-gateway", "ns-registry"]


# --- docker ----------------------------------------------------------------------------------------


def docker_expected(layout: str = "tiered") -> dict:
    """What roles/lab_status/vars/main.yml hands the docker collector."""
    return {
        "project": "shoplab",
        "layout": layout,
        "flat_network": DATA["shoplab_flat_network"]["docker_network"],
        "services": SERVICES,
        "instances": INSTANCES,
        "tiers": TIERS,
        "service_networks": topo.shoplab_docker_networks(SERVICES, FLOWS),
        "flows": FLOWS,
        "registered_services": REGISTERED,
    }


def container(inst: dict) -> dict:
    """A healthy running container of an instance as `docker inspect` describes it, on its service's
    networks; its hostname (what the registry lists) is the instance's name."""
    service = inst["service"]
    nets = topo.shoplab_docker_networks(SERVICES, FLOWS)[service]
    return {
        "Name": f"/shoplab-{SERVICES[service]['compose_service']}-{inst['index']}",
        "Config": {
            "Labels": {"org.shoplab.service": service, "org.shoplab.tier": inst["tier"]},
            "Hostname": inst["name"],
        },
        "State": {
            "Status": "running",
            "Running": True,
            "ExitCode": 0,
            "Health": {"Status": "healthy", "Log": [{"Output": "connection refused\n"}]},
        },
        "RestartCount": 0,
        "NetworkSettings": {
            "Networks": {TIERS[t]["docker_network"]: {"IPAddress": "172.31.0.5"} for t in nets}
        },
    }


def network(number: int, tier: dict) -> dict:
    """A tier's network as `docker network inspect` describes it (its bridge: br-<Id's first 12>)."""
    return {
        "Name": tier["docker_network"],
        "Id": str(number) * 64,
        "IPAM": {"Config": [{"Subnet": tier["docker_subnet"]}]},
        "Options": {},
        "Internal": tier["docker_internal"],
        "Containers": {"x": {"Name": "shoplab-redis-1", "IPv4Address": "172.29.0.2/24"}},
    }


class FakeDockerHost(FakeHost):
    """The answers of a healthy docker lab's host; a test changes its containers."""

    prefixes = (
        ("docker", "ps"),
        ("docker", "network", "ls"),
        ("docker", "logs"),
        ("iptables", "-w", "-t", "filter", "-L", "FORWARD"),  # the one chain with lab rules here
        ("iptables",),
        ("docker", "exec", "shoplab-service-registry-1", "python3"),
    )

    def __init__(self) -> None:
        self.containers = [container(i) for i in INSTANCES]

    def by_name(self, name: str) -> dict:
        return next(c for c in self.containers if c["Name"] == f"/{name}")

    def answers(self) -> dict[tuple[str, ...], tuple[int, str]]:
        names = [c["Name"][1:] for c in self.containers]
        networks = [t["docker_network"] for t in TIERS.values()]
        running = [c["Config"]["Hostname"] for c in self.containers if c["State"]["Running"]]
        table = {
            ("docker", "ps"): (0, "".join(f"{n}\n" for n in names)),
            ("docker", "inspect", *names): (0, json.dumps(self.containers)),
            ("docker", "network", "ls"): (0, "".join(f"{n}\n" for n in networks)),
            ("docker", "network", "inspect", *networks): (
                0,
                json.dumps([network(n, t) for n, t in enumerate(TIERS.values())]),
            ),
            ("iptables", "-w", "-t", "filter", "-L", "FORWARD"): (
                0,
                "Chain FORWARD (policy DROP 0 packets, 0 bytes)\n"
                f"{IPTABLES_HEADER}\n"
                "     120     9000 ACCEPT     0    --  *      br-111111111111  0.0.0.0/0   0.0.0.0/0\n"
                "       5      300 ACCEPT     0    --  *      docker0          0.0.0.0/0   0.0.0.0/0\n",
            ),
            ("iptables",): (1, "iptables: No chain/target/match by that name.\n"),
            ("cat", statuslib.CONNTRACK_COUNT): (0, "7\n"),
            ("docker", "logs"): (0, "a last line\n"),
            ("docker", "exec", "shoplab-service-registry-1", "python3"): (
                0,
                registry_answer([h for h in running if h.split("-")[0] in REGISTERED]),
            ),
        }
        for c in self.containers:
            port = SERVICES[c["Config"]["Labels"]["org.shoplab.service"]]["port"]
            table[("docker", "exec", c["Name"][1:], "cat", "/proc/net/tcp", "/proc/net/tcp6")] = (
                0,
                "  sl  local_address rem_address   st tx_queue rx_queue\n"
                f"   0: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000\n",
            )
            table[("docker", "exec", c["Name"][1:], "cat", "/proc/net/route")] = (
                0,
                "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                "eth0\t00000000\t01001FAC\t0003\t0\t0\t0\t00000000\n"
                "eth0\t00001FAC\t00000000\t0001\t0\t0\t0\t00FFFFFF\n",
            )
        return table


CONTAINERS_TITLE = "Containers: state, health, addresses, routes, listening ports (docker ps, docker exec)"
FIREWALL_TITLE = "iptables: Docker's rules for the lab's bridges, with packet counters (iptables -L -n -v)"
FAILURES_TITLE = "Recent failures (docker logs of unhealthy or stopped containers)"


def test_docker_healthy_lab_has_every_section_and_no_problem():
    report = status_docker.collect(FakeDockerHost(), docker_expected())
    assert [title for title, _ in report.sections] == [
        "Docker networks and their containers (docker network inspect)",
        CONTAINERS_TITLE,
        FIREWALL_TITLE,
        "Connection tracking (conntrack -C)",
        FAILURES_TITLE,
        "Registry contents (GET /services inside the registry container)",
    ]
    assert report.problems == []
    assert report.notes == []
    assert {"from": "host", "to": "gateway", "via": "published port"} in report.state["flows"]
    assert report.state["networks"]["shoplab-database"]["gateway"] == "172.29.0.1"


def test_docker_section_lines():
    bodies = dict(status_docker.collect(FakeDockerHost(), docker_expected()).sections)
    assert bodies["Docker networks and their containers (docker network inspect)"].splitlines()[:2] == [
        "shoplab-backend    172.31.0.0/24   bridge br-111111111111",
        "    shoplab-redis-1              172.29.0.2/24",
    ]
    assert bodies[CONTAINERS_TITLE].splitlines()[:2] == [
        "shoplab-api-gateway-1        running  healthy   restarts 0  "
        "shoplab-backend=172.31.0.5 shoplab-frontend=172.31.0.5",
        "                              routes: default via 172.31.0.1, 172.31.0.0/24; listening: 3000",
    ]
    # Only the rules of the lab's bridges, under their table and chain.
    assert bodies[FIREWALL_TITLE].splitlines() == [
        "filter Chain FORWARD (policy DROP 0 packets, 0 bytes)",
        IPTABLES_HEADER,
        "     120     9000 ACCEPT     0    --  *      br-111111111111  0.0.0.0/0   0.0.0.0/0",
    ]
    assert bodies["Connection tracking (conntrack -C)"] == "7 tracked connections on the host"
    assert bodies[FAILURES_TITLE] == "(none)"
    registry = bodies["Registry contents (GET /services inside the registry container)"].splitlines()
    assert registry[0] == "order    order-1        10.0.0.1:5001  heartbeat 1.2s ago"


def test_docker_problems_name_what_is_wrong():
    host = FakeDockerHost()
    host.by_name("shoplab-product-service-2")["State"] = {
        "Status": "exited",
        "Running": False,
        "ExitCode": 137,
    }
    host.by_name("shoplab-order-service-1")["State"]["Health"]["Status"] = "unhealthy"
    host.by_name("shoplab-order-service-2")["RestartCount"] = 3
    report = status_docker.collect(host, docker_expected())
    assert report.problems == [
        "container shoplab-order-service-1 (order) is unhealthy: connection refused",
        "container shoplab-product-service-2 (product) is exited (exit code 137)",
        "product: 1 healthy instance(s) run, the data says 2",
        "order: 1 healthy instance(s) run, the data says 2",
    ]
    assert report.notes == ["shoplab-order-service-2 restarted 3 times"]
    assert report.sections[4][1].splitlines() == [
        "shoplab-order-service-1: running/unhealthy, restarts 0",
        "a last line",
        "shoplab-order-service-2: running/healthy, restarts 3",
        "a last line",
        "shoplab-product-service-2: exited/none, restarts 0",
        "a last line",
    ]


def test_docker_registry_not_running():
    host = FakeDockerHost()
    host.by_name("shoplab-service-registry-1")["State"] = {
        "Status": "exited",
        "Running": False,
        "ExitCode": 1,
    }
    report = status_docker.collect(host, docker_expected())
    assert "the registry container is not running" in report.problems
    assert report.sections[-1] == [
        "Registry contents (GET /services inside the registry container)",
        "(empty)",
    ]


@pytest.mark.parametrize(("layout", "networks"), [("tiered", 3), ("flat", 1)])
def test_docker_expected_networks_follow_the_layout(layout, networks):
    expected = status_docker.expect_networks(docker_expected(layout))
    assert len(expected["networks"]) == networks
    assert expected["service_networks"]["gateway"] == (
        ["shoplab-backend", "shoplab-frontend"] if layout == "tiered" else ["shoplab-app"]
    )


def test_docker_listening_and_routes_parse_proc_files():
    host = FakeDockerHost()
    assert status_docker.listening(host, "shoplab-redis-1") == [6379]
    assert status_docker.routes(host, "shoplab-redis-1") == ["default via 172.31.0.1", "172.31.0.0/24"]
