"""A docker lab over three hosts (a Swarm) as its hosts answer lab_status's Swarm collector: the manager (lab
host 1) and two workers, each answering the commands roles/lab_status/files/status_swarm.py runs the way
Docker 20.10/26 does (the JSON shapes were captured from a real Swarm). Shared by the collector's tests and
the diagram's (which draws what the collector reports on each host)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import shoplab_topology as topo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "lab_status" / "files"))

import status_swarm
import statuslib

DATA = topo.load_topology()
SERVICES, TIERS, FLOWS = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_allowed_flows"]
LAB_HOSTS = ["shoplab-vm-1", "shoplab-vm-2", "shoplab-vm-3"]
UNDERLAY = ["192.168.150.11", "192.168.150.12", "192.168.150.13"]
# The lab's instances over the three hosts, each with its Compose service (which names its Swarm service),
# as roles/lab_status hands them to the collector.
LAB3 = topo.shoplab_docker_instances(
    topo.shoplab_instances(SERVICES, TIERS, topo.default_counts(DATA), DATA["shoplab_placement"], 3),
    SERVICES,
    TIERS,
    FLOWS,
    DATA["shoplab_docker_guest_offset"],
)
REGISTERED = ["product", "order"]
LABEL = DATA["shoplab_swarm"]["node_label"]
NETWORKS = topo.shoplab_docker_networks(SERVICES, FLOWS)
JSON_LINES = ("--format", "{{json .}}")
STACK = ("--filter", "label=com.docker.stack.namespace=shoplab")


def expected(number: int) -> dict:
    """What roles/lab_status/vars/main.yml hands the Swarm collector on lab host `number` of three."""
    return {
        "project": "shoplab",
        "layout": "tiered",
        "flat_network": DATA["shoplab_flat_network"]["docker_network"],
        "services": SERVICES,
        "instances": [i for i in LAB3 if i["lab_host"] == number],
        "lab_instances": LAB3,
        "tiers": TIERS,
        "service_networks": NETWORKS,
        "flows": FLOWS,
        "registered_services": REGISTERED,
        "host": {"number": number, "count": 3, "names": LAB_HOSTS},
        "underlay_address": UNDERLAY[number - 1],
        "node_label": LABEL,
        "encrypted": True,
        "chain_prefix": "SHOPLAB-SWARM",
    }


def task(inst: dict) -> dict:
    """A healthy running task container of an instance as `docker inspect` describes it."""
    return {
        "Name": f"/{status_swarm.service_name(expected(1), inst)}.1.{inst['index']:0>25}",
        "Config": {
            "Labels": {
                "com.docker.stack.namespace": "shoplab",
                "org.shoplab.service": inst["service"],
                "org.shoplab.instance": inst["name"],
                "org.shoplab.tier": inst["tier"],
            },
            "Hostname": "0123456789ab",
        },
        "State": {"Status": "running", "Running": True, "ExitCode": 0, "Health": {"Status": "healthy"}},
        "RestartCount": 0,
        "NetworkSettings": {
            "Networks": {
                TIERS[t]["docker_network"]: {"IPAddress": "172.31.0.5"} for t in NETWORKS[inst["service"]]
            }
        },
    }


class FakeSwarmHost:
    """Lab host `number` of a healthy three-host Swarm lab; a test changes its fields."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.tasks = [task(i) for i in LAB3 if i["lab_host"] == number]
        self.info = {
            "LocalNodeState": "active",
            "ControlAvailable": number == 1,
            "NodeID": f"node{number}",
            "NodeAddr": UNDERLAY[number - 1],
            "RemoteManagers": [{"NodeID": "node1", "Addr": f"{UNDERLAY[0]}:2377"}],
        }
        self.nodes = [
            {
                "ID": f"node{n}",
                "Description": {"Hostname": LAB_HOSTS[n - 1]},
                "Spec": {"Labels": {LABEL: str(n)}, "Role": "manager" if n == 1 else "worker"},
                "Status": {"State": "ready", "Addr": UNDERLAY[n - 1]},
                **({"ManagerStatus": {"Leader": True, "Reachability": "reachable"}} if n == 1 else {}),
            }
            for n in (1, 2, 3)
        ]
        self.replicas = {i["name"]: "1/1" for i in LAB3}
        self.task_nodes = {i["name"]: LAB_HOSTS[i["lab_host"] - 1] for i in LAB3}
        self.service = {i["name"]: status_swarm.service_name(expected(1), i) for i in LAB3}
        self.encrypted = True
        self.chains = {"SHOPLAB-SWARM-INPUT", "SHOPLAB-SWARM-FORWARD"}

    def overlays(self) -> list[dict]:
        """The lab's overlays this host carries: those its tasks join (a worker learns no other)."""
        here = {n for t in self.tasks for n in t["NetworkSettings"]["Networks"]}
        found = []
        for name, tier in TIERS.items():
            if tier["docker_network"] not in here:
                continue
            options = {"com.docker.network.driver.overlay.vxlanid_list": str(4096 + tier["vni"])}
            if self.encrypted:
                options["encrypted"] = ""
            found.append(
                {
                    "Name": tier["docker_network"],
                    "Driver": "overlay",
                    "Scope": "swarm",
                    "Internal": tier["docker_internal"],
                    "IPAM": {"Config": [{"Subnet": tier["docker_subnet"], "Gateway": "172.31.0.1"}]},
                    "Options": options,
                    "Peers": [{"Name": f"vm{n}", "IP": a} for n, a in enumerate(UNDERLAY, 1)],
                    "Containers": {
                        "a": {"Name": f"shoplab_{name}-task", "IPv4Address": "172.31.0.9/24"},
                        f"lb-{tier['docker_network']}": {
                            "Name": f"{tier['docker_network']}-endpoint",
                            "IPv4Address": "172.31.0.4/24",
                        },
                    },
                }
            )
        return found

    def registry_answer(self) -> str:
        """GET /services: every product and order instance of the lab, registered."""
        services: dict[str, list] = {s: [] for s in REGISTERED}
        for inst in LAB3:
            if inst["service"] in REGISTERED:
                entry = {"instance_id": inst["name"], "address": "10.0.0.1", "port": 5001}
                services[inst["service"]].append({**entry, "last_heartbeat_seconds_ago": 1})
        return json.dumps({"services": services})

    def answers(self) -> dict[tuple[str, ...], tuple[int, str]]:
        """Every command the collector may run here, and its answer."""
        names = [t["Name"][1:] for t in self.tasks]
        overlays = self.overlays()
        listed = ["bridge", "docker_gwbridge", "ingress"] + [n["Name"] for n in overlays]
        table = {
            ("docker", "info", "--format", "{{json .Swarm}}"): (0, json.dumps(self.info)),
            ("docker", "node", "ls", *JSON_LINES): (0, lines({"ID": n["ID"]} for n in self.nodes)),
            ("docker", "node", "inspect", *(n["ID"] for n in self.nodes)): (0, json.dumps(self.nodes)),
            ("docker", "service", "ls", *STACK, *JSON_LINES): (
                0,
                lines(
                    {"Name": self.service[n], "Mode": "replicated", "Replicas": r}
                    for n, r in self.replicas.items()
                ),
            ),
            ("docker", "network", "ls", *JSON_LINES): (0, lines({"Name": n} for n in listed)),
            ("docker", "network", "inspect", *sorted(n["Name"] for n in overlays)): (0, json.dumps(overlays)),
            ("docker", "ps", "-aq", *STACK): (0, "".join(f"{n}\n" for n in names)),
            ("docker", "inspect", *names): (0, json.dumps(self.tasks)),
            ("cat", statuslib.CONNTRACK_COUNT): (0, "9\n"),
        }
        for instance, replicas in self.replicas.items():
            state = "Running 2 minutes ago" if replicas.startswith("1") else "Pending 2 minutes ago"
            ps = {
                "Name": f"{self.service[instance]}.1",
                "Node": self.task_nodes[instance],
                "CurrentState": state,
            }
            argv = ("docker", "service", "ps", "--filter", "desired-state=running", *JSON_LINES)
            table[(*argv, self.service[instance])] = (0, lines([ps]))
        for chain in ("SHOPLAB-SWARM-INPUT", "SHOPLAB-SWARM-FORWARD"):
            table[("iptables", "-w", "-L", chain, "-n", "-v", "-x")] = (
                (0, f"Chain {chain} (1 references)\n    pkts      bytes target\n      12      720 ACCEPT\n")
                if chain in self.chains
                else (1, "iptables: No chain/target/match by that name.\n")
            )
        for t in self.tasks:
            name, labels = t["Name"][1:], t["Config"]["Labels"]
            port = SERVICES[labels["org.shoplab.service"]]["port"]
            table[("docker", "exec", name, "cat", "/proc/net/tcp", "/proc/net/tcp6")] = (
                0,
                f"  sl  local_address\n   0: 00000000:{port:04X} 00000000:0000 0A\n",
            )
            table[("docker", "exec", name, "cat", "/proc/net/route")] = (0, "Iface\tDestination\n")
            if labels["org.shoplab.service"] == "registry":
                query = status_swarm.status_docker.REGISTRY_QUERY.format(port=port)
                table[("docker", "exec", name, "python3", "-c", query)] = (0, self.registry_answer())
        return table

    def __call__(self, *argv: str, timeout: float = 10) -> tuple[int, str]:
        table = self.answers()
        assert argv in table, f"unexpected command {argv}"
        return table[argv]


def lines(objects) -> str:
    """`docker … --format '{{json .}}'` output: one JSON object per line."""
    return "".join(json.dumps(o) + "\n" for o in objects)
