"""Bridges, addresses, routes, namespaces, names and units are as the topology data says."""

from __future__ import annotations

import pytest
from labdata import INSTANCES, TESTINFRA_HOSTS, TIERS

testinfra_hosts = TESTINFRA_HOSTS

APPS = [i for i in INSTANCES if i["kind"] == "app"]
UNITS = ["shoplab-firewall.service", "shoplab-netns.service"] + [
    f"shoplab-{i['name']}.service" for i in INSTANCES
]


@pytest.mark.parametrize("tier", sorted(TIERS), ids=str)
def test_bridge_holds_the_host_address(lab, tier):
    data = TIERS[tier]
    prefixlen = int(data["subnet"].split("/")[1])
    [link] = lab.json(f"ip -j -d addr show dev {data['bridge']}")
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in link["flags"]
    addresses = {(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"}
    assert addresses == {(data["host_address"], prefixlen)}


def test_host_routes_between_tiers(lab):
    assert lab.check("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    for data in TIERS.values():
        routes = lab.json(f"ip -j route show {data['subnet']}")
        assert [r["dev"] for r in routes] == [data["bridge"]], routes


def test_namespaces_exist(lab):
    names = {n["name"] for n in lab.json("ip -j netns list")}
    assert {i["namespace"] for i in INSTANCES} <= names


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i["name"])
def test_instance_network(lab, inst):
    [veth] = lab.json(f"ip -j -d link show dev {inst['veth_host']}")
    assert veth["linkinfo"]["info_kind"] == "veth"
    assert veth.get("master") == inst["bridge"]
    assert "UP" in veth["flags"]
    ns = inst["namespace"]
    links = lab.json(f"ip -n {ns} -j addr show")
    inet = {
        (a["local"], a["prefixlen"]) for link in links for a in link["addr_info"] if a["family"] == "inet"
    }
    assert inet == {("127.0.0.1", 8), (inst["address"], inst["prefixlen"])}
    [default] = lab.json(f"ip -n {ns} -j route show default")
    assert default["gateway"] == inst["gateway"]
    # Lab names resolve inside the namespace as Docker's DNS would answer them.
    for name in ("registry", "redis", "postgres"):
        target = next(i for i in INSTANCES if i["hostname"] == name and i["index"] == 1)
        resolved = lab.check(f"ip netns exec {ns} getent ahostsv4 {name}").split()[0]
        assert resolved == target["address"], f"{name} in {ns}"


def test_networkd_leaves_the_lab_links_alone(lab):
    # networkd's stock 80-container-ve.network takes ve-* links: IPv6 on, DHCP served, off the bridge.
    if lab.run("systemctl is-active systemd-networkd.service").stdout.strip() != "active":
        pytest.skip("systemd-networkd does not run on this lab host")
    setup = {}
    for line in lab.check("networkctl list --no-legend --no-pager").splitlines():
        _, link, _, _, state = line.split()[:5]
        setup[link] = state
    lab_links = [t["bridge"] for t in TIERS.values()] + [i["veth_host"] for i in INSTANCES]
    assert {link: setup.get(link) for link in lab_links} == dict.fromkeys(lab_links, "unmanaged")
    for link in lab_links:
        assert lab.check(f"cat /proc/sys/net/ipv6/conf/{link}/disable_ipv6").strip() == "1", link


@pytest.mark.parametrize("unit", UNITS)
def test_unit_active_and_enabled(lab, unit):
    assert lab.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    assert lab.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"


@pytest.mark.parametrize("inst", APPS, ids=lambda i: i["name"])
def test_app_runs_unprivileged_in_its_namespace(lab, inst):
    unit = f"shoplab-{inst['name']}.service"
    pid = lab.check(f"systemctl show -p MainPID --value {unit}").strip()
    assert pid != "0"
    # The unit's processes run as the unprivileged user inside the instance's namespace.
    users = set(lab.check(f"ps -o user= --ppid {pid} -p {pid}").split()) - {"root"}
    assert users == {"shoplab"}, users
    # It listens inside its namespace, and not in the host's (the root can't read other users'
    # /proc/PID/ns without CAP_SYS_PTRACE, so the listener is the evidence).
    port_filter = f"'sport = :{inst['port']}'"
    inside = lab.check(f"ip netns exec {inst['namespace']} ss -Hltn {port_filter}")
    assert inside.strip(), f"nothing listens on {inst['port']} in {inst['namespace']}"
    assert not lab.check(f"ss -Hltn {port_filter}").strip(), f"{inst['port']} listens on the host"


def test_datastores_listen_only_in_their_namespaces(lab):
    ports = {i["port"] for i in INSTANCES if i["kind"] == "datastore"}
    host_listeners = lab.check("ss -Hltn").split("\n")
    for port in ports:
        assert not [line for line in host_listeners if line and line.split()[3].endswith(f":{port}")]
    for unit in ("redis-server.service", "postgresql.service", "postgresql@15-main.service"):
        assert lab.run(f"systemctl is-active {unit}").stdout.strip() != "active", unit


@pytest.mark.parametrize("inst", INSTANCES, ids=lambda i: i["name"])
def test_every_thread_runs_the_topologys_cpu_scheduling_policy(lab, inst):
    """`cpu_scheduling` in the topology: SCHED_BATCH (ps: B) behind the gateway, SCHED_OTHER (TS) otherwise,
    for the unit's process, its workers (PostgreSQL's backends) and all their threads."""
    pid = lab.check(f"systemctl show -p MainPID --value shoplab-{inst['name']}.service").strip()
    assert pid != "0"
    classes = set(lab.check(f"ps -L -o cls= --ppid {pid} -p {pid}").split())
    assert classes == ({"B"} if inst["cpu_scheduling"] == "batch" else {"TS"}), classes
