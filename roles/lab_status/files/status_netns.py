"""Collect the netns lab's live state on the lab host (read-only) and compare it with the data.

Run by roles/lab_status as root on the lab host, beside statuslib.py, with one argument: the
expected topology as base64 JSON. Prints one JSON document: report sections, problems, notes and the
structured live state (roles/lab_diagram draws it). Changes nothing; sends no packet outside the
namespaces it inspects (the registry is asked from inside its own namespace).

A lab over several hosts: `instances` are the ones this host runs, `lab_instances` all of the lab's,
`host` says which host of the lab this is, and `vxlan` what joins its tier bridges to the other hosts'
(each tier's VXLAN port, its VNI, this host's underlay address and the peers it floods to).
"""

from __future__ import annotations

import ipaddress
import json
import re

import statuslib
from statuslib import Report, Run, run_json


def recent_journal(run: Run, *selection: str) -> tuple[int, str]:
    """The last 15 lines of the lab units' journal of the last 30 minutes that `selection` picks
    (journalctl exits 1 when nothing matches)."""
    return run(
        "journalctl", "--no-pager", "-q", "-o", "short-iso",
        "--since", "-30min", "-n", "15", "-u", "shoplab-*", *selection,
    )  # fmt: skip


def bridges(run: Run, expected: dict, report: Report) -> list[dict]:
    """Bridges and their ports; returns the bridge ports (`bridge -j link`) for the namespaces."""
    links = run_json(run, "ip", "-j", "link", "show", "type", "bridge")
    addrs = {a["ifname"]: a for a in run_json(run, "ip", "-j", "addr")}
    ports = run_json(run, "bridge", "-j", "link")
    found = report.state["bridges"]
    lines = []
    for link in links:
        name = link["ifname"]
        inet = [
            f"{i['local']}/{i['prefixlen']}"
            for i in addrs.get(name, {}).get("addr_info", [])
            if i["family"] == "inet"
        ]
        members = sorted(p["ifname"] for p in ports if p.get("master") == name)
        found[name] = {"addresses": inet, "ports": members, "state": link.get("operstate", "")}
        lines.append(
            f"{name:<12} {link.get('operstate', ''):<5} {' '.join(inet):<16} "
            f"ports: {' '.join(members) or '-'}"
        )
    report.section("Bridges and their ports (ip link, bridge link)", "\n".join(lines) or "(no bridge)")
    tiers = expected["tiers"]
    for tier_name, tier in tiers.items():
        bridge = found.get(tier["bridge"])
        if bridge is None:
            report.problems.append(f"bridge {tier['bridge']} ({tier_name} tier) is missing")
        elif (
            f"{tier['host_address']}/{ipaddress.ip_network(tier['subnet']).prefixlen}"
            not in bridge["addresses"]
        ):
            report.problems.append(f"bridge {tier['bridge']} lacks the host address {tier['host_address']}")
    lab_bridges = {t["bridge"] for t in tiers.values()}
    known_veths = {i["veth_host"] for i in expected["instances"]}
    vxlan = expected.get("vxlan") or {}
    if vxlan.get("peers"):
        known_veths |= {vxlan["device_prefix"] + name for name in tiers}
    for name, bridge in found.items():
        if name in lab_bridges:
            for port in bridge["ports"]:
                if port not in known_veths:
                    report.notes.append(
                        f"{port} on {name} is not an instance the data lists (left over from scaling?)"
                    )
    return ports


def namespace(run: Run, inst: dict, ports: list[dict], report: Report) -> str:
    """One running instance's namespace: its report line; its problems go to the report."""
    ns = inst["namespace"]
    entry = report.state["namespaces"][ns]
    for link in run_json(run, "ip", "-n", ns, "-j", "addr"):
        for info in link.get("addr_info", []):
            if info["family"] == "inet" and link["ifname"] != "lo":
                entry["addresses"].append(f"{info['local']}/{info['prefixlen']}")
    routes = run_json(run, "ip", "-n", ns, "-j", "route")
    entry["routes"] = [f"{r['dst']}" + (f" via {r['gateway']}" if r.get("gateway") else "") for r in routes]
    rc, out = run("ip", "netns", "exec", ns, "ss", "-Hltn")
    entry["listening"] = (
        sorted({line.split()[3] for line in out.splitlines() if line.strip()}) if rc == 0 else []
    )
    master = next((p.get("master") for p in ports if p["ifname"] == inst["veth_host"]), None)
    entry["bridge"] = master
    want = f"{inst['address']}/{inst['prefixlen']}"
    if want not in entry["addresses"]:
        report.problems.append(f"{ns} lacks its address {want}")
    if not any(r.get("dst") == "default" and r.get("gateway") == inst["gateway"] for r in routes):
        report.problems.append(f"{ns} has no default route via {inst['gateway']} (its tier's bridge)")
    if master != inst["bridge"]:
        report.problems.append(
            f"{inst['veth_host']} is not a port of {inst['bridge']} (found {master or 'none'})"
        )
    if not any(addr.rsplit(":", 1)[-1] == str(inst["port"]) for addr in entry["listening"]):
        report.problems.append(f"nothing listens on port {inst['port']} in {ns} ({inst['name']})")
    return (
        f"{ns:<16} {' '.join(entry['addresses']) or '-':<16} on {master or '-':<12} "
        f"routes: {', '.join(entry['routes']) or '-'}; listening: {' '.join(entry['listening']) or '-'}"
    )


def namespaces(run: Run, expected: dict, report: Report, ports: list[dict]) -> None:
    """Namespaces: addresses, routes, listening sockets."""
    present = {n["name"] for n in run_json(run, "ip", "-j", "netns", "list")}
    lines = []
    for inst in expected["instances"]:
        ns = inst["namespace"]
        report.state["namespaces"][ns] = {
            "instance": inst["name"],
            "service": inst["service"],
            "tier": inst["tier"],
            "addresses": [],
            "routes": [],
            "listening": [],
            "bridge": None,
        }
        if ns not in present:
            report.problems.append(f"namespace {ns} ({inst['name']}) is missing")
            lines.append(f"{ns:<16} MISSING")
            continue
        lines.append(namespace(run, inst, ports, report))
    for ns in sorted(n for n in present if n.startswith("ns-") and n not in report.state["namespaces"]):
        report.notes.append(f"namespace {ns} runs but the data does not list it")
    report.section(
        "Namespaces: addresses, routes, listening sockets (ip netns exec … ip addr / ip route / ss)",
        "\n".join(lines),
    )


def firewall(run: Run, expected: dict, report: Report) -> None:
    """iptables: the lab's chains with packet counters; the allowed flows' counters go to the state."""
    prefix = expected["chain_prefix"]
    out_lines = []
    _rc, rules = run("iptables", "-w", "-S")
    chains = sorted({m for m in re.findall(rf"^-N ({re.escape(prefix)}-\S+)", rules, re.M)})
    if not chains:
        report.problems.append(f"no {prefix}-* iptables chain: the firewall is not applied")
    for chain in chains:
        _rc, listing = run("iptables", "-w", "-L", chain, "-n", "-v", "-x")
        out_lines.append(listing.rstrip())
        for line in listing.splitlines()[2:]:
            match = re.search(r"/\* (\S+) -> (\S+) \*/", line)
            if match:
                fields = line.split()
                report.state["flows"].append(
                    {
                        "from": match.group(1),
                        "to": match.group(2),
                        "packets": int(fields[0]),
                        "bytes": int(fields[1]),
                        "port": int(m.group(1)) if (m := re.search(r"dpt:(\d+)", line)) else 0,
                    }
                )
    _rc, nat = run("iptables", "-w", "-t", "nat", "-S")
    for chain in sorted(set(re.findall(rf"^-N ({re.escape(prefix)}-\S+)", nat, re.M))):
        out_lines.append(
            "nat " + run("iptables", "-w", "-t", "nat", "-L", chain, "-n", "-v", "-x")[1].rstrip()
        )
    report.section(
        "iptables: the lab's chains with packet counters (iptables -L -n -v)", "\n\n".join(out_lines)
    )


def conntrack(run: Run, report: Report) -> None:
    """Connection tracking: the count and the limit."""
    report.state["conntrack"] = statuslib.conntrack_count(run)
    rc, limit = run("cat", statuslib.CONNTRACK_MAX)
    report.section(
        "Connection tracking (conntrack -C)",
        f"{report.state['conntrack']} tracked connections (max {limit.strip() if rc == 0 else '?'})",
    )


def units(run: Run, expected: dict, report: Report) -> None:
    """systemd units and recent failures."""
    lines = []
    for inst in expected["instances"]:
        unit = f"shoplab-{inst['name']}.service"
        _rc, out = run("systemctl", "show", unit, "-p", "ActiveState,SubState,NRestarts,Result")
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        active = props.get("ActiveState", "unknown")
        report.state["units"][inst["name"]] = active
        lines.append(
            f"{unit:<28} {active}/{props.get('SubState', '?')}  result {props.get('Result', '?')}"
            f"  restarts {props.get('NRestarts', '?')}"
        )
        if active != "active":
            report.problems.append(f"unit {unit} is {active} ({inst['name']} is down)")
    for unit in ("shoplab-netns.service", "shoplab-firewall.service"):
        _rc, out = run("systemctl", "is-active", unit)
        lines.append(f"{unit:<28} {out.strip()}")
        if out.strip() != "active":
            report.problems.append(f"unit {unit} is {out.strip()}")
    # journalctl -p warning: systemd's own messages about the units. The services' warnings and errors
    # are JSON lines on stderr, which journald files at priority info: found by their level instead.
    for title, selection in (
        ("Recent warnings and failures (journalctl -p warning, 30 min):", ["-p", "warning"]),
        ("The services' warnings and errors (their JSON lines, 30 min):",
         ["--grep", '"level":"(warning|error|critical)"']),
    ):  # fmt: skip
        rc, journal = recent_journal(run, *selection)
        lines.extend(["", title, journal.rstrip() if rc == 0 and journal.strip() else "(none)"])
    report.section("systemd units (systemctl show) and recent failures", "\n".join(lines))


def vxlan_port(run: Run, tier_name: str, expected: dict, links: dict, report: Report) -> str:
    """One tier's VXLAN port: its report line; what differs from the data goes to the problems."""
    tier, vxlan = expected["tiers"][tier_name], expected["vxlan"]
    name = vxlan["device_prefix"] + tier_name
    link = links.get(name)
    if link is None:
        report.problems.append(
            f"VXLAN port {name} ({tier['bridge']}'s port to the other lab hosts) is missing"
        )
        return f"{name:<12} MISSING"
    info = link.get("linkinfo", {}).get("info_data", {})
    fdb = run_json(run, "bridge", "-j", "fdb", "show", "dev", name)
    floods = sorted(e["dst"] for e in fdb if e.get("mac") == "00:00:00:00:00:00" and e.get("dst"))
    remote = sum(1 for e in fdb if e.get("dst") and e.get("mac") != "00:00:00:00:00:00")
    entry = {
        "vni": info.get("id"),
        "local": info.get("local"),
        "port": info.get("port"),
        "mtu": link.get("mtu"),
        "bridge": link.get("master"),
        "floods_to": floods,
        "remote_macs": remote,
    }
    report.state["vxlan"][name] = entry
    want = {
        "vni": int(tier["vni"]),
        "local": vxlan["local"],
        "port": int(vxlan["port"]),
        "mtu": int(vxlan["mtu"]),
        "bridge": tier["bridge"],
        "floods_to": sorted(vxlan["peers"]),
    }
    for field, value in want.items():
        if entry[field] != value:
            report.problems.append(f"VXLAN port {name}: {field} is {entry[field]}, the data says {value}")
    return (
        f"{name:<12} VNI {entry['vni']} from {entry['local']}:{entry['port']} mtu {entry['mtu']} "
        f"on {entry['bridge'] or '-'}; floods to {', '.join(floods) or '-'}; "
        f"{remote} instance MAC(s) pinned to a peer"
    )


def vxlans(run: Run, expected: dict, report: Report) -> None:
    """A lab over several hosts: each tier's VXLAN port to the other hosts (ip -d link, bridge fdb)."""
    vxlan = expected.get("vxlan") or {}
    if not vxlan.get("peers"):
        return
    links = {
        link["ifname"]: link for link in run_json(run, "ip", "-d", "-j", "link", "show", "type", "vxlan")
    }
    lines = [vxlan_port(run, name, expected, links, report) for name in expected["tiers"]]
    report.section("VXLAN to the other lab hosts (ip -d link show type vxlan, bridge fdb)", "\n".join(lines))


def registry_host(expected: dict) -> dict | None:
    """The lab host that runs the registry ({number, name}), when it is not this one."""
    host = expected.get("host") or {}
    reg = next(i for i in expected.get("lab_instances", expected["instances"]) if i["service"] == "registry")
    if any(i["name"] == reg["name"] for i in expected["instances"]):
        return None
    names = host.get("names") or []
    number = int(reg.get("lab_host", 1))
    return {"number": number, "name": names[number - 1] if len(names) >= number else f"host {number}"}


def registry(run: Run, expected: dict, report: Report) -> None:
    """The registry's contents, asked from inside the registry's own namespace (on the host that runs it;
    the others say where it is)."""
    elsewhere = registry_host(expected)
    if elsewhere:
        report.section(
            "Registry contents",
            f"(the registry runs on lab host {elsewhere['number']}, {elsewhere['name']}: see its report)",
        )
        return
    instances = expected.get("lab_instances", expected["instances"])
    reg = next(i for i in instances if i["service"] == "registry")
    url = f"http://{reg['address']}:{reg['port']}/services"
    rc, out = run("ip", "netns", "exec", reg["namespace"], "curl", "-sS", "-m", "3", url)
    lines = []
    try:
        services = json.loads(out)["services"] if rc == 0 else None
    except (ValueError, KeyError):
        services = None
    if services is None:
        report.problems.append(f"the registry at {reg['address']}:{reg['port']} does not answer")
        lines.append(out.strip() or "(no answer)")
    else:
        listed = report.state["registry"]
        lines = statuslib.registry_lines(services, 12, listed)
        for inst in instances:
            registered = inst["name"] in listed.get(inst["service"], [])
            if inst["service"] in expected["registered_services"] and not registered:
                report.problems.append(f"{inst['name']} is not registered with the registry")
        for service, ids in listed.items():
            for instance_id in ids:
                if instance_id not in {i["name"] for i in instances}:
                    report.notes.append(
                        f"the registry lists {service} {instance_id}, which the data does not"
                    )
    report.section(f"Registry contents (GET {url})", "\n".join(lines) or "(empty)")


def collect(run: Run, expected: dict) -> Report:
    """Every section, in the report's order."""
    report = Report(
        state={
            "mode": "netns",
            "host": expected.get("host") or {"number": 1, "count": 1, "names": []},
            "bridges": {},
            "vxlan": {},
            "namespaces": {},
            "flows": [],
            "units": {},
            "registry": {},
        }
    )
    ports = bridges(run, expected, report)
    vxlans(run, expected, report)
    namespaces(run, expected, report, ports)
    firewall(run, expected, report)
    conntrack(run, report)
    units(run, expected, report)
    registry(run, expected, report)
    return report


def main() -> None:
    statuslib.main(collect)


if __name__ == "__main__":
    main()
