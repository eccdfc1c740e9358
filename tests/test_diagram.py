"""lab_diagram's drawing (roles/lab_diagram/files/draw.py) of live states recorded as lab_status collects
them: one lab host, one netns lab over three hosts (a cluster per host, the tiers' VXLAN ports joined), and
one docker lab over three hosts (a Swarm: a cluster per host, each overlay's slices joined).

`dot` renders every graph drawn here, so a graph Graphviz refuses fails too.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import shoplab_topology as topo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "lab_diagram" / "files"))

import draw
from swarmfake import LAB3, NETWORKS, FakeSwarmHost, status_swarm
from swarmfake import expected as swarm_expected

DATA = topo.load_topology()
SERVICES, TIERS, FLOWS = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_allowed_flows"]
PLACEMENT, VXLAN = DATA["shoplab_placement"], DATA["shoplab_vxlan"]
NAMES = ["shoplab-vm-1", "shoplab-vm-2", "shoplab-vm-3"]
UNDERLAY = ["192.168.150.11", "192.168.150.12", "192.168.150.13"]


def lab(hosts: int) -> list[dict]:
    return topo.shoplab_instances(SERVICES, TIERS, topo.default_counts(DATA), PLACEMENT, hosts)


def flow_rules(instances: list[dict], number: int) -> list[dict]:
    """The allowed flows a host's firewall holds (netns_firewall): every flow between instances of the lab,
    and `host` flows to the instances this host runs."""
    rules = []
    for flow in FLOWS:
        for dst in (i for i in instances if i["service"] == flow["to"]):
            if flow["from"] == "host":
                if dst["lab_host"] == number:
                    rules.append(
                        {"from": "host", "to": dst["name"], "packets": 0, "bytes": 0, "port": dst["port"]}
                    )
                continue
            for src in (i for i in instances if i["service"] == flow["from"]):
                rules.append(
                    {"from": src["name"], "to": dst["name"], "packets": 3, "bytes": 180, "port": dst["port"]}
                )
    return rules


def collected(instances: list[dict], number: int, hosts: int) -> dict:
    """lab_status's document from a healthy lab host `number` of `hosts`."""
    own = [i for i in instances if i["lab_host"] == number]
    local, peers = UNDERLAY[number - 1], [a for a in UNDERLAY[:hosts] if a != UNDERLAY[number - 1]]
    vxlan = {
        f"{VXLAN['device_prefix']}{name}": {
            "vni": tier["vni"],
            "local": local,
            "port": VXLAN["port"],
            "mtu": 1450,
            "bridge": tier["bridge"],
            "floods_to": peers,
            "remote_macs": 2,
        }
        for name, tier in TIERS.items()
    }
    return {
        "sections": [],
        "problems": [],
        "notes": [],
        "state": {
            "mode": "netns",
            "bridges": {
                tier["bridge"]: {"addresses": [f"{tier['host_address']}/24"], "ports": [], "state": "UP"}
                for tier in TIERS.values()
            },
            "vxlan": vxlan if hosts > 1 else {},
            "namespaces": {
                i["namespace"]: {
                    "instance": i["name"],
                    "service": i["service"],
                    "tier": i["tier"],
                    "addresses": [f"{i['address']}/24"],
                    "routes": [f"default via {i['gateway']}"],
                    "listening": [f"{i['address']}:{i['port']}"],
                    "bridge": i["bridge"],
                }
                for i in own
            },
            "flows": flow_rules(instances, number),
        },
    }


def hosts_document(hosts: int) -> dict:
    """draw.py's first argument, as roles/lab_diagram writes it."""
    instances = lab(hosts)
    return {
        "names": NAMES[:hosts],
        "addresses": UNDERLAY[:hosts],
        "states": [collected(instances, n, hosts) for n in range(1, hosts + 1)],
    }


def expected(hosts: int) -> dict:
    """draw.py's second argument: the topology data (roles/lab_diagram/vars/main.yml)."""
    instances = lab(hosts)
    return {"mode": "netns", "layout": "tiered", "instances": instances, "tiers": TIERS, "services": SERVICES,
            "flows": FLOWS}  # fmt: skip


def drawn(tmp_path: Path, document: dict, hosts: int, mode: str = "netns") -> tuple[str, list[str]]:
    """Run draw.py as the role does; the dot source and the differences. `dot` must accept the graph."""
    (tmp_path / "hosts.json").write_text(json.dumps(document))
    (tmp_path / "expected.json").write_text(json.dumps({**expected(hosts), "mode": mode}))
    out = tmp_path / "lab.dot"
    argv = [
        sys.executable,
        draw.__file__,
        str(tmp_path / "hosts.json"),
        str(tmp_path / "expected.json"),
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    subprocess.run(["dot", "-Tsvg", str(out), "-o", str(tmp_path / "lab.svg")], check=True)
    return out.read_text(), json.loads(done.stdout)["differences"]


def cluster_of(dot: str, node: str) -> str:
    """The innermost host cluster (`cluster_host_<n>`) that declares `node`, or '' outside any."""
    depth, where = [], ""
    for line in dot.splitlines():
        opened = re.match(r'\s*subgraph "(cluster_[^"]+)" \{', line)
        if opened:
            depth.append(opened.group(1))
        elif line.strip() == "}":
            if depth:
                depth.pop()
        elif re.match(rf'\s*"n_{re.escape(node)}" \[label=', line):
            where = next((c for c in reversed(depth) if c.startswith("cluster_host_")), "")
    return where


def test_one_lab_host_is_drawn_as_before_without_a_difference(tmp_path):
    dot, differences = drawn(tmp_path, hosts_document(1), 1)
    assert differences == []
    assert "cluster_host_" not in dot and "VXLAN" not in dot
    assert '"n_host" [label="lab host (root namespace)"' in dot
    assert '"n_host" -> "n_gateway" [label="tcp/3000"];' in dot
    for inst in lab(1):
        assert inst["namespace"] in dot and inst["address"] in dot


def test_a_lab_over_three_hosts_draws_each_instance_in_the_cluster_of_its_host(tmp_path):
    dot, differences = drawn(tmp_path, hosts_document(3), 3)
    assert differences == []
    assert "mode=netns over 3 lab hosts" in dot
    for number, name in enumerate(NAMES, start=1):
        assert f'label="lab host {number}: {name} ({UNDERLAY[number - 1]})"' in dot
        assert cluster_of(dot, f"host-{number}") == f"cluster_host_{number}"
    for inst in lab(3):
        assert cluster_of(dot, inst["name"]) == f"cluster_host_{inst['lab_host']}", inst["name"]
    # The published gateway is reached from the root namespace of the host that runs it.
    assert '"n_host-1" -> "n_gateway" [label="tcp/3000"];' in dot


def test_a_lab_over_three_hosts_joins_each_tier_across_every_pair_of_hosts(tmp_path):
    dot, _ = drawn(tmp_path, hosts_document(3), 3)
    links = re.findall(r'"n_h(\d)_vx-(\w+)" -> "n_h(\d)_vx-\w+" \[dir=both.*label="VNI (\d+)"\]', dot)
    assert sorted(links) == sorted(
        (str(a), tier, str(b), str(TIERS[tier]["vni"])) for tier in TIERS for a, b in ((1, 2), (1, 3), (2, 3))
    )


@pytest.mark.parametrize(
    ("breakage", "difference"),
    [
        ("rule", "shoplab-vm-3: allowed flow product-1 -> postgres has no firewall rule in the live state"),
        ("placement", "product-2 runs on lab host(s) [2, 3], the placement says 3"),
        ("problem", "shoplab-vm-2: VXLAN port vx-backend: floods_to is [], the data says ['192.168.150.11']"),
    ],
)
def test_a_lab_over_three_hosts_names_the_host_of_each_difference(tmp_path, breakage, difference):
    document = copy.deepcopy(hosts_document(3))
    third, second = document["states"][2], document["states"][1]
    if breakage == "rule":
        third["state"]["flows"] = [
            f for f in third["state"]["flows"] if (f["from"], f["to"]) != ("product-1", "postgres")
        ]
    elif breakage == "placement":
        second["state"]["namespaces"]["ns-product-2"] = third["state"]["namespaces"]["ns-product-2"]
    else:
        second["problems"].append(difference.split(": ", 1)[1])
        second["state"]["vxlan"]["vx-backend"]["floods_to"] = []
    dot, differences = drawn(tmp_path, document, 3)
    assert differences == [difference]
    assert "1 difference(s) from the data" in dot
    if breakage == "problem":
        # The link the live state no longer has is not drawn.
        assert not re.search(r'"n_h1_vx-backend" -> "n_h2_vx-backend"', dot)


# --- docker mode over three hosts (a Swarm) ------------------------------------------------------------


def swarm_document(hosts: list | None = None) -> dict:
    """draw.py's first argument for a Swarm lab: what status_swarm.py reports on each of the three hosts."""
    hosts = hosts or [FakeSwarmHost(n) for n in (1, 2, 3)]
    states = [json.loads(status_swarm.collect(h, swarm_expected(h.number)).to_json()) for h in hosts]
    return {"names": NAMES, "addresses": UNDERLAY, "states": states}


def swarm_networks(inst: dict) -> set[str]:
    """The overlays an instance's task joins."""
    return {TIERS[t]["docker_network"] for t in NETWORKS[inst["service"]]}


def test_a_swarm_lab_draws_each_task_in_the_cluster_of_its_host(tmp_path):
    dot, differences = drawn(tmp_path, swarm_document(), 3, "docker")
    assert differences == []
    assert "mode=docker (a Swarm) over 3 lab hosts" in dot
    assert 'label="lab host 1: shoplab-vm-1 (192.168.150.11), Swarm manager"' in dot
    assert 'label="lab host 3: shoplab-vm-3 (192.168.150.13), Swarm worker"' in dot
    for inst in LAB3:
        service = re.escape(status_swarm.service_name(swarm_expected(1), inst))
        [task] = set(re.findall(rf'"n_(h\d_{service}\.[^"]+)" \[label=', dot))
        assert cluster_of(dot, task) == f"cluster_host_{inst['lab_host']}", inst["name"]
    # The routing mesh answers on every host and hands the published port to the gateway's task.
    assert re.search(r'"n_mesh" -> "n_h1_shoplab_api-gateway\.[^"]+" \[label="published port"', dot)


def test_a_swarm_lab_joins_each_overlay_between_the_hosts_that_carry_it(tmp_path):
    dot, _ = drawn(tmp_path, swarm_document(), 3, "docker")
    links = re.findall(
        r'"n_h(\d)_ov-([\w-]+)" -> "n_h(\d)_ov-[\w-]+" \[dir=both.*label="VNI \d+, ESP"\]', dot
    )
    carried = {
        network: {n for n in (1, 2, 3) for i in lab(3) if i["lab_host"] == n and network in swarm_networks(i)}
        for network in {t["docker_network"] for t in TIERS.values()}
    }
    want = {(str(a), net, str(b)) for net, on in carried.items() for a in on for b in on if a < b}
    assert set(links) == want
    assert len(links) == len(want)


def test_a_swarm_lab_names_a_task_on_the_wrong_host(tmp_path):
    hosts = [FakeSwarmHost(n) for n in (1, 2, 3)]
    moved = next(t for t in hosts[2].tasks if t["Config"]["Labels"]["org.shoplab.instance"] == "product-2")
    hosts[1].tasks.append(moved)
    hosts[2].tasks.remove(moved)
    _, differences = drawn(tmp_path, swarm_document(hosts), 3, "docker")
    assert "product-2 runs on lab host(s) 2, the placement says 3" in differences
    assert "shoplab-vm-3: no task of product-2 runs on this host, which the placement gives it" in differences
