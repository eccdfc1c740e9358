"""Draw the running lab as a Graphviz graph from its live state, and list where it differs from the data.

Usage: draw.py STATE_JSON EXPECTED_JSON OUT_DOT
STATE_JSON is roles/lab_status's collected document (sections, problems, notes, state); EXPECTED_JSON
holds the topology data (mode, instances, tiers, services, flows). Writes the dot file and prints
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


def netns_graph(state: dict, expected: dict) -> tuple[list[str], list[str]]:  # noqa: PLR0912
    lines, diffs = [], []
    tiers = expected["tiers"]
    bridge_tier = {t["bridge"]: name for name, t in tiers.items()}
    lines.append(f"{node_id('host')} [label={q('lab host (root namespace)')}, shape=box3d];")
    for bridge, info in sorted(state["bridges"].items()):
        tier = bridge_tier.get(bridge)
        if tier is None:
            continue
        colour = TIER_COLOURS.get(tier, "#eeeeee")
        lines.append(f"subgraph {q('cluster_' + bridge)} {{")
        host = ", ".join(info["addresses"]) or "-"
        label = f"{tier} tier: bridge {bridge}\\n{tiers[tier]['subnet']}, host {host}"
        lines.append(f'  label="{label}"; style=filled; fillcolor="{colour}";')
        for ns, entry in sorted(state["namespaces"].items()):
            if entry.get("bridge") != bridge:
                continue
            ports = ", ".join(a.rsplit(":", 1)[-1] for a in entry["listening"]) or "-"
            text = f"{ns}\\n{', '.join(entry['addresses']) or 'no address'}\\nlistening: {ports}"
            lines.append(
                f'  {node_id(entry["instance"])} [label="{text}", shape=box, style=filled, fillcolor=white];'
            )
        lines.append("}")
    for ns, entry in sorted(state["namespaces"].items()):
        if entry.get("bridge") not in bridge_tier:
            lines.append(
                f"{node_id(entry['instance'])} [label={q(ns + ' (not on a lab bridge)')}, color=red];"
            )
    live_pairs = set()
    for flow in state["flows"]:
        src, dst = flow["from"], flow["to"]
        if src != "host" and src not in {e["instance"] for e in state["namespaces"].values()}:
            continue
        live_pairs.add((src, dst))
        label = f"tcp/{flow['port']}" if flow.get("port") else ""
        lines.append(f"{node_id(src)} -> {node_id(dst)} [label={q(label)}];")
    want = set()
    by_service: dict[str, list[str]] = {}
    for inst in expected["instances"]:
        by_service.setdefault(inst["service"], []).append(inst["name"])
    for flow in expected["flows"]:
        sources = ["host"] if flow["from"] == "host" else by_service.get(flow["from"], [])
        for src in sources:
            for dst in by_service.get(flow["to"], []):
                want.add((src, dst))
    for src, dst in sorted(want - live_pairs):
        diffs.append(f"allowed flow {src} -> {dst} has no firewall rule in the live state")
        lines.append(f'{node_id(src)} -> {node_id(dst)} [style=dashed, color=red, label="missing rule"];')
    for src, dst in sorted(live_pairs - want):
        diffs.append(f"the firewall allows {src} -> {dst}, which the data does not list")
    return lines, diffs


def docker_graph(state: dict, expected: dict) -> tuple[list[str], list[str]]:  # noqa: PLR0912
    lines, diffs = [], []
    tier_of_network = {t["docker_network"]: name for name, t in expected["tiers"].items()}
    lines.append(f"{node_id('host')} [label={q('Docker host (published port on 127.0.0.1)')}, shape=box3d];")
    home: dict[str, str] = {}
    for name, entry in state["containers"].items():
        nets = list(entry["networks"])
        own = next((n for n in nets if tier_of_network.get(n) == entry.get("tier")), nets[0] if nets else "")
        home[name] = own
    for network, info in sorted(state["networks"].items()):
        tier = tier_of_network.get(network, network)
        colour = TIER_COLOURS.get(tier, "#eeeeee")
        lines.append(f"subgraph {q('cluster_' + network)} {{")
        internal = ", internal" if info["internal"] else ""
        label = f"network {network} ({tier} tier{internal})\\n{info['subnet']}, bridge {info['bridge']}"
        lines.append(f'  label="{label}"; style=filled; fillcolor="{colour}";')
        for cname, entry in sorted(state["containers"].items()):
            if home[cname] != network:
                continue
            addrs = "\\n".join(f"{n}: {a}" for n, a in sorted(entry["networks"].items()))
            health = entry["health"] if entry["status"] == "running" else entry["status"]
            colour = "white" if health in ("healthy", "none") else "#fecaca"
            text = f"{cname} ({health})\\n{addrs}"
            lines.append(
                f'  {node_id(cname)} [label="{text}", shape=box, style=filled, fillcolor="{colour}"];'
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


def main() -> None:
    collected = json.loads(Path(sys.argv[1]).read_text())
    expected = json.loads(Path(sys.argv[2]).read_text())
    state = collected["state"]
    draw = netns_graph if state["mode"] == "netns" else docker_graph
    body, diffs = draw(state, expected)
    diffs = list(dict.fromkeys(collected.get("problems", []) + diffs + collected.get("notes", [])))
    title = f"Shoplab, mode={state['mode']}: the running lab (live state)"
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
