"""Draw the running lab as a Graphviz graph from its live state, and list where it differs from the data.

Usage: draw.py HOSTS_JSON EXPECTED_JSON OUT_DOT
HOSTS_JSON holds the lab's hosts, host 1 first: {names, addresses, states}, a host's state being
roles/lab_status's document collected there (sections, problems, notes, state). A lab of one host is drawn
as one host; a lab over several as one cluster per host: netns mode with its tier bridges, the tiers' VXLAN
ports joined across hosts; docker mode (a Swarm) with its slice of each overlay and its tasks, each overlay's
slices joined across hosts. EXPECTED_JSON holds the topology data (mode, instances with the
host each runs on, tiers, services, flows). Writes the dot file and prints
{"differences": [...]} as JSON. Everything drawn comes from the live state; the data is only used to
name the differences.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIER_COLOURS = {"frontend": "#dbeafe", "backend": "#dcfce7", "database": "#fef3c7"}


def q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_id(name: str) -> str:
    return q("n_" + name)


def host_node(host: dict, many: bool) -> str:
    """The node of a lab host's root namespace (`host` on a lab of one host)."""
    return node_id(f"host-{host['number']}" if many else "host")


def netns_tier_cluster(host: dict, bridge: str, tier: str, expected: dict, *, many: bool) -> list[str]:
    """One tier bridge of one host as a cluster: its namespaces, and its VXLAN port on a lab over several
    hosts."""
    state = host["collected"]["state"]
    info = state["bridges"][bridge]
    colour = TIER_COLOURS.get(tier, "#eeeeee")
    prefix = f"h{host['number']}_" if many else ""
    lines = [f"subgraph {q('cluster_' + prefix + bridge)} {{"]
    address = ", ".join(info["addresses"]) or "-"
    label = f"{tier} tier: bridge {bridge}\\n{expected['tiers'][tier]['subnet']}, host {address}"
    lines.append(f'  label="{label}"; style=filled; fillcolor="{colour}";')
    for ns, entry in sorted(state["namespaces"].items()):
        if entry.get("bridge") != bridge:
            continue
        ports = ", ".join(a.rsplit(":", 1)[-1] for a in entry["listening"]) or "-"
        text = f"{ns}\\n{', '.join(entry['addresses']) or 'no address'}\\nlistening: {ports}"
        lines.append(
            f'  {node_id(entry["instance"])} [label="{text}", shape=box, style=filled, fillcolor=white];'
        )
    for name, vx in sorted(state.get("vxlan", {}).items()):
        if vx.get("bridge") == bridge:
            text = f"{name}\\nVXLAN VNI {vx['vni']}, udp/{vx['port']}\\nmtu {vx['mtu']}"
            lines.append(
                f'  {node_id(prefix + name)} [label="{text}", shape=cds, style=filled, fillcolor=white];'
            )
    lines.append("}")
    return lines


def netns_host(host: dict, expected: dict, many: bool) -> list[str]:
    """One lab host: its root namespace and its tier bridges (in a cluster of its own on several hosts)."""
    state = host["collected"]["state"]
    bridge_tier = {t["bridge"]: name for name, t in expected["tiers"].items()}
    body = []
    if many:
        body.append(f"{host_node(host, many)} [label={q('root namespace: routes, firewall')}, shape=box3d];")
    else:
        body.append(f"{host_node(host, many)} [label={q('lab host (root namespace)')}, shape=box3d];")
    for bridge in sorted(state["bridges"]):
        if bridge in bridge_tier:
            body.extend(netns_tier_cluster(host, bridge, bridge_tier[bridge], expected, many=many))
    for ns, entry in sorted(state["namespaces"].items()):
        if entry.get("bridge") not in bridge_tier:
            body.append(
                f"{node_id(entry['instance'])} [label={q(ns + ' (not on a lab bridge)')}, color=red];"
            )
    if not many:
        return body
    underlay = host.get("address") or ""
    return host_cluster(
        host, f"lab host {host['number']}: {host['name']}" + (f" ({underlay})" if underlay else ""), body
    )


def host_cluster(host: dict, label: str, body: list[str]) -> list[str]:
    """One lab host's cluster (`cluster_host_<n>`) around its part of the picture."""
    return [
        f"subgraph {q('cluster_host_' + str(host['number']))} {{",
        f'  label={q(label)}; style="rounded,bold"; color="#64748b";',
        *("  " + line for line in body),
        "}",
    ]


def vxlan_links(hosts: list[dict]) -> list[str]:
    """Each tier's VXLAN ports joined, once per pair of hosts that flood to each other (live state)."""
    lines = []
    for i, one in enumerate(hosts):
        for other in hosts[i + 1 :]:
            ours = one["collected"]["state"].get("vxlan", {})
            theirs = other["collected"]["state"].get("vxlan", {})
            for name, vx in sorted(ours.items()):
                peer = theirs.get(name)
                if peer and peer.get("local") in vx["floods_to"] and vx.get("local") in peer["floods_to"]:
                    ends = node_id(f"h{one['number']}_{name}"), node_id(f"h{other['number']}_{name}")
                    label = q(f"VNI {vx['vni']}")
                    lines.append(
                        f'{ends[0]} -> {ends[1]} [dir=both, style=bold, color="#475569", label={label}];'
                    )
    return lines


def netns_flows(hosts: list[dict], expected: dict, many: bool) -> tuple[list[str], list[str]]:
    """The allowed flows each host's firewall holds, drawn once, and the ones that differ from the data
    (per host on several hosts: every host holds every flow between instances, and `host` flows to the
    instances it runs)."""
    lines, diffs = [], []
    running = {e["instance"] for h in hosts for e in h["collected"]["state"]["namespaces"].values()}
    by_service: dict[str, list[dict]] = {}
    for inst in expected["instances"]:
        by_service.setdefault(inst["service"], []).append(inst)
    drawn = set()
    for host in hosts:
        live = set()
        for flow in host["collected"]["state"]["flows"]:
            src = f"host-{host['number']}" if flow["from"] == "host" and many else flow["from"]
            live.add((flow["from"], flow["to"]))
            if (flow["from"] == "host" or src in running) and (src, flow["to"]) not in drawn:
                drawn.add((src, flow["to"]))
                label = f"tcp/{flow['port']}" if flow.get("port") else ""
                lines.append(f"{node_id(src)} -> {node_id(flow['to'])} [label={q(label)}];")
        want = set()
        for flow in expected["flows"]:
            for dst in by_service.get(flow["to"], []):
                if flow["from"] == "host":
                    if int(dst.get("lab_host", 1)) == host["number"] or not many:
                        want.add(("host", dst["name"]))
                    continue
                want.update((src["name"], dst["name"]) for src in by_service.get(flow["from"], []))
        where = f"{host['name']}: " if many else ""
        for src, dst in sorted(want - live):
            diffs.append(f"{where}allowed flow {src} -> {dst} has no firewall rule in the live state")
            src_node = f"host-{host['number']}" if src == "host" and many else src
            lines.append(
                f'{node_id(src_node)} -> {node_id(dst)} [style=dashed, color=red, label="missing rule"];'
            )
        for src, dst in sorted(live - want):
            diffs.append(f"{where}the firewall allows {src} -> {dst}, which the data does not list")
    return lines, diffs


def placement_diffs(hosts: list[dict], expected: dict) -> list[str]:
    """A lab over several hosts: each instance runs on the host the placement gives it, and on no other."""
    diffs = []
    for inst in expected["instances"]:
        found = [
            h
            for h in hosts
            if f"ns-{inst['name']}" in h["collected"]["state"]["namespaces"]
            and h["collected"]["state"]["namespaces"][f"ns-{inst['name']}"]["addresses"]
        ]
        numbers = sorted(h["number"] for h in found)
        if numbers and numbers != [int(inst.get("lab_host", 1))]:
            diffs.append(
                f"{inst['name']} runs on lab host(s) {numbers}, the placement says {inst.get('lab_host', 1)}"
            )
    return diffs


def netns_graph(hosts: list[dict], expected: dict) -> tuple[list[str], list[str]]:
    many = len(hosts) > 1
    lines = []
    for host in hosts:
        lines.extend(netns_host(host, expected, many))
    lines.extend(vxlan_links(hosts))
    flow_lines, diffs = netns_flows(hosts, expected, many)
    return lines + flow_lines, diffs + (placement_diffs(hosts, expected) if many else [])


def home_networks(containers: dict, tier_of_network: dict) -> dict[str, str]:
    """The network each container is drawn in: its own tier's, else the first it joins."""
    home = {}
    for name, entry in containers.items():
        nets = list(entry["networks"])
        home[name] = next(
            (n for n in nets if tier_of_network.get(n) == entry.get("tier")), nets[0] if nets else ""
        )
    return home


def container_node(node: str, title: str, entry: dict) -> str:
    """One container or Swarm task: `title`, its health (red when not healthy), its address on each
    network."""
    addrs = "\\n".join(f"{n}: {a}" for n, a in sorted(entry["networks"].items()))
    health = entry["health"] if entry["status"] == "running" else entry["status"]
    colour = "white" if health in ("healthy", "none") else "#fecaca"
    text = f"{title} ({health})\\n{addrs}"
    return f'{node_id(node)} [label="{text}", shape=box, style=filled, fillcolor="{colour}"];'


def docker_graph(state: dict, expected: dict) -> tuple[list[str], list[str]]:
    lines, diffs = [], []
    tier_of_network = {t["docker_network"]: name for name, t in expected["tiers"].items()}
    lines.append(f"{node_id('host')} [label={q('Docker host (published port on 127.0.0.1)')}, shape=box3d];")
    home = home_networks(state["containers"], tier_of_network)
    for network, info in sorted(state["networks"].items()):
        tier = tier_of_network.get(network, network)
        colour = TIER_COLOURS.get(tier, "#eeeeee")
        lines.append(f"subgraph {q('cluster_' + network)} {{")
        internal = ", internal" if info["internal"] else ""
        label = f"network {network} ({tier} tier{internal})\\n{info['subnet']}, bridge {info['bridge']}"
        lines.append(f'  label="{label}"; style=filled; fillcolor="{colour}";')
        lines.extend(
            "  " + container_node(cname, cname, entry)
            for cname, entry in sorted(state["containers"].items())
            if home[cname] == network
        )
        lines.append("}")
    by_service: dict[str, list[str]] = {}
    for cname, entry in state["containers"].items():
        if entry["status"] == "running":
            by_service.setdefault(entry["service"], []).append(cname)
    for flow in state["flows"]:
        sources = ["host"] if flow["from"] == "host" else by_service.get(flow["from"], [])
        for src in sorted(sources):
            for dst in sorted(by_service.get(flow["to"], [])):
                lines.append(f"{node_id(src)} -> {node_id(dst)} [label={q(flow['via'])}, fontsize=8];")
    wanted: dict[str, int] = {}
    for inst in expected["instances"]:
        wanted[inst["service"]] = wanted.get(inst["service"], 0) + 1
    for service, count in sorted(wanted.items()):
        have = len(by_service.get(service, []))
        if have != count:
            diffs.append(f"{service}: {have} container(s) run, the data says {count}")
    for network in tier_of_network:
        if network not in state["networks"] and expected.get("layout", "tiered") == "tiered":
            diffs.append(f"network {network} of the data does not exist")
    return lines, diffs


def swarm_host(host: dict, expected: dict) -> list[str]:
    """One node of the Swarm: a slice of each overlay it carries (its VXLAN end, the tasks homed on it)."""
    state = host["collected"]["state"]
    prefix = f"h{host['number']}_"
    tier_of_network = {t["docker_network"]: name for name, t in expected["tiers"].items()}
    home = home_networks(state["containers"], tier_of_network)
    body = []
    for network, info in sorted(state["networks"].items()):
        tier = tier_of_network.get(network, network)
        colour = TIER_COLOURS.get(tier, "#eeeeee")
        flags = "".join(
            [", internal" if info["internal"] else "", ", encrypted" if info["encrypted"] else ""]
        )
        label = f"overlay {network} ({tier} tier{flags})\\n{info['subnet']}"
        body.append(f"subgraph {q('cluster_' + prefix + network)} {{")
        body.append(f'  label="{label}"; style=filled; fillcolor="{colour}";')
        end = node_id(prefix + "ov-" + network)
        body.append(
            f'  {end} [label="VXLAN VNI {info["vni"] or "?"}", shape=cds, style=filled, fillcolor=white];'
        )
        body.extend(
            "  " + container_node(prefix + name, entry.get("instance") or name, entry)
            for name, entry in sorted(state["containers"].items())
            if home[name] == network
        )
        body.append("}")
    swarm = state.get("swarm", {})
    role = "manager" if swarm.get("manager") else "worker"
    address = host.get("address") or swarm.get("address", "")
    return host_cluster(host, f"lab host {host['number']}: {host['name']} ({address}), Swarm {role}", body)


def overlay_links(hosts: list[dict]) -> list[str]:
    """Each overlay's slices joined, once per pair of hosts that list each other as its peers (live)."""
    lines = []
    for i, one in enumerate(hosts):
        ours_addr = one["collected"]["state"].get("swarm", {}).get("address")
        for other in hosts[i + 1 :]:
            theirs = other["collected"]["state"]["networks"]
            their_addr = other["collected"]["state"].get("swarm", {}).get("address")
            for network, info in sorted(one["collected"]["state"]["networks"].items()):
                peer = theirs.get(network)
                if peer and their_addr in info["peers"] and ours_addr in peer["peers"]:
                    ends = (
                        node_id(f"h{one['number']}_ov-{network}"),
                        node_id(f"h{other['number']}_ov-{network}"),
                    )
                    label = q(f"VNI {info['vni']}" + (", ESP" if info["encrypted"] else ""))
                    lines.append(
                        f'{ends[0]} -> {ends[1]} [dir=both, style=bold, color="#475569", label={label}];'
                    )
    return lines


def swarm_graph(hosts: list[dict], expected: dict) -> tuple[list[str], list[str]]:
    """A docker lab over several hosts (a Swarm): a cluster per node, its overlays' slices and tasks, the
    slices joined by VXLAN, the routing mesh in front of the gateway, the flows the overlays allow."""
    lines = [f"{node_id('mesh')} [label={q('routing mesh: the published port on every host')}, shape=box3d];"]
    for host in hosts:
        lines.extend(swarm_host(host, expected))
    lines.extend(overlay_links(hosts))
    # Each service's running tasks: (node id, container name, overlays); each instance's lab hosts.
    running: dict[str, list[tuple[str, str, set]]] = {}
    where: dict[str, list[int]] = {}
    for host in hosts:
        for name, entry in sorted(host["collected"]["state"]["containers"].items()):
            if entry["status"] == "running":
                task = (f"h{host['number']}_{name}", name, set(entry["networks"]))
                running.setdefault(entry["service"], []).append(task)
                where.setdefault(entry.get("instance", ""), []).append(host["number"])
    diffs = []
    for flow in expected["flows"]:
        for dst, dst_name, dst_nets in running.get(flow["to"], []):
            if flow["from"] == "host":
                lines.append(f'{node_id("mesh")} -> {node_id(dst)} [label="published port", fontsize=8];')
                continue
            for src, src_name, src_nets in running.get(flow["from"], []):
                if shared := sorted(src_nets & dst_nets):
                    lines.append(
                        f"{node_id(src)} -> {node_id(dst)} [label={q(', '.join(shared))}, fontsize=8];"
                    )
                else:
                    diffs.append(
                        f"{flow['from']} -> {flow['to']}: {src_name} and {dst_name} share no overlay"
                    )
    return lines, diffs + swarm_placement_diffs(where, expected)


def swarm_placement_diffs(where: dict[str, list[int]], expected: dict) -> list[str]:
    """Each instance's task runs on the host the placement gives it, and on no other (`where`: the lab
    hosts each instance's running tasks were found on)."""
    diffs = []
    for inst in expected["instances"]:
        found, placed = sorted(where.get(inst["name"], [])), int(inst.get("lab_host", 1))
        if not found:
            diffs.append(f"{inst['name']} runs on no lab host (the placement says {placed})")
        elif found != [placed]:
            hosts_text = ", ".join(map(str, found))
            diffs.append(f"{inst['name']} runs on lab host(s) {hosts_text}, the placement says {placed}")
    return diffs


def main() -> None:
    given = json.loads(Path(sys.argv[1]).read_text())
    hosts = [
        {"name": name, "number": number, "address": address, "collected": collected}
        for number, (name, address, collected) in enumerate(
            zip(given["names"], given["addresses"], given["states"], strict=True), start=1
        )
    ]
    expected = json.loads(Path(sys.argv[2]).read_text())
    mode = hosts[0]["collected"]["state"]["mode"]
    many = len(hosts) > 1
    if mode == "netns":
        body, diffs = netns_graph(hosts, expected)
    elif mode == "swarm":
        body, diffs = swarm_graph(hosts, expected)
    else:
        body, diffs = docker_graph(hosts[0]["collected"]["state"], expected)
    found = []
    for host in hosts:
        where = f"{host['name']}: " if many else ""
        found.extend(where + text for text in host["collected"].get("problems", []))
    found.extend(diffs)
    for host in hosts:
        where = f"{host['name']}: " if many else ""
        found.extend(where + text for text in host["collected"].get("notes", []))
    diffs = list(dict.fromkeys(found))
    over = f" over {len(hosts)} lab hosts" if many else ""
    shown = "docker (a Swarm)" if mode == "swarm" else mode
    title = f"Shoplab, mode={shown}{over}: the running lab (live state)"
    if diffs:
        title += f"\\n{len(diffs)} difference(s) from the data, see the playbook output"
    out = [
        "digraph shoplab {",
        f'  graph [label="{title}", labelloc=t, fontname="Helvetica", rankdir=LR, newrank=true];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        *("  " + line for line in body),
        "}",
    ]
    Path(sys.argv[3]).write_text("\n".join(out) + "\n")
    print(json.dumps({"differences": diffs}))


if __name__ == "__main__":
    main()
