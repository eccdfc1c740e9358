"""lab_status's Swarm collector (roles/lab_status/files/status_swarm.py) on recorded command outputs
(tests/swarmfake.py): what each host of a three-host Swarm lab reports, the problems it names, and what
only the manager or the registry's host adds.
"""

from __future__ import annotations

from swarmfake import LABEL, FakeSwarmHost, expected, status_swarm

MANAGER_TITLES = [
    "Swarm membership (docker info)",
    "Swarm nodes and their lab-host labels (docker node inspect)",
    "Stack services and where their tasks run (docker service ls, docker service ps)",
]
EVERY_HOST_TITLES = [
    "The lab's overlay networks on this host (docker network inspect)",
    "Tasks on this host: state, health, addresses, routes, listening ports (docker ps, docker exec)",
    "iptables: the Swarm's chains with packet counters (iptables -L -n -v)",
    "Connection tracking (conntrack -C)",
]


def test_the_manager_reports_nodes_services_and_the_registry_with_no_problem():
    report = status_swarm.collect(FakeSwarmHost(1), expected(1))
    titles = [title for title, _ in report.sections]
    assert titles == [
        *MANAGER_TITLES,
        *EVERY_HOST_TITLES,
        "Registry contents (GET /services inside the registry's task)",
    ]
    assert report.problems == []
    assert report.notes == []
    assert {n: e["lab_host"] for n, e in report.state["nodes"].items()} == {
        "shoplab-vm-1": "1",
        "shoplab-vm-2": "2",
        "shoplab-vm-3": "3",
    }
    assert report.state["services"]["product-2"] == {"replicas": "1/1", "lab_hosts": [3]}
    assert sorted(report.state["registry"]["product"]) == ["product-1", "product-2"]


def test_a_worker_reports_its_own_part_and_names_the_registrys_host():
    report = status_swarm.collect(FakeSwarmHost(3), expected(3))
    bodies = dict(report.sections)
    assert [title for title, _ in report.sections] == [
        MANAGER_TITLES[0],
        *EVERY_HOST_TITLES,
        "Registry contents",
    ]
    assert report.problems == []
    assert bodies["Registry contents"] == "(the registry's task runs on lab host 1: see its report)"
    assert bodies[MANAGER_TITLES[0]] == (
        "active, worker, node node3 at 192.168.150.13; managers: 192.168.150.11:2377"
    )
    # The overlays its tasks join, each with its VNI and peers; the overlay's own endpoint is not a task.
    overlays = bodies[EVERY_HOST_TITLES[0]].splitlines()
    assert overlays[0] == (
        "shoplab-backend    172.31.0.0/24   VNI 4117, encrypted; "
        "peers 192.168.150.11, 192.168.150.12, 192.168.150.13"
    )
    assert overlays[1].split() == ["shoplab_backend-task", "172.31.0.9/24"]
    assert sorted(report.state["networks"]) == ["shoplab-backend", "shoplab-database"]
    assert {e["instance"] for e in report.state["containers"].values()} == {
        "product-2",
        "order-2",
        "redis",
        "postgres",
    }


def test_problems_name_the_node_the_service_and_the_host():
    host = FakeSwarmHost(1)
    del host.nodes[2]["Spec"]["Labels"][LABEL]
    host.nodes[1]["Status"]["State"] = "down"
    host.replicas["order-1"] = "0/1"
    host.task_nodes["product-1"] = "shoplab-vm-1"
    host.tasks = [t for t in host.tasks if t["Config"]["Labels"]["org.shoplab.instance"] != "gateway"]
    host.chains.discard("SHOPLAB-SWARM-FORWARD")
    report = status_swarm.collect(host, expected(1))
    assert report.problems == [
        f"node shoplab-vm-3 has no {LABEL} label",
        "node shoplab-vm-2 (lab host 2) is down",
        f"no node carries {LABEL}=3",
        "product-1 runs on lab host 1, the placement says 2",
        "service shoplab_order-service-1 runs 0/1 replicas",
        "overlay shoplab-frontend is not on this host, which runs tasks that join it",
        "no task of gateway runs on this host, which the placement gives it",
        "iptables chain SHOPLAB-SWARM-FORWARD is missing: the Swarm's firewall is not applied",
    ]
    # A task on the unlabelled node is shown where it runs; its placement is not judged.
    services = dict(report.sections)[MANAGER_TITLES[2]].splitlines()
    assert services[3] == "shoplab_product-service-2  1/1   on node shoplab-vm-3 (no label)"
    assert services[4] == "shoplab_order-service-1    0/1   on -"


def test_a_host_outside_the_swarm_or_in_the_wrong_role_says_so():
    host = FakeSwarmHost(2)
    host.info.update(ControlAvailable=True, NodeAddr="10.0.2.15")
    host.encrypted = False
    report = status_swarm.collect(host, expected(2))
    assert report.problems[:4] == [
        "lab host 2 should be a worker, it is a manager",
        "this node advertises 10.0.2.15, not its underlay address 192.168.150.12",
        "overlay shoplab-backend: encrypted is False, the data says True",
        "overlay shoplab-database: encrypted is False, the data says True",
    ]
    host = FakeSwarmHost(2)
    host.info = {"LocalNodeState": "inactive"}
    report = status_swarm.collect(host, expected(2))
    assert report.problems[0] == "this host is not in a Swarm (docker info: inactive)"
    assert report.state["swarm"]["manager"] is False
