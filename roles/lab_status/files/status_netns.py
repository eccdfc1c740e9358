"""Collect the netns lab's live state on the lab host (read-only) and compare it with the data.

Run by roles/lab_status (ansible.builtin.script) as root on the lab host, with one argument: the
expected topology as base64 JSON. Prints one JSON document: report sections, problems, notes and the
structured live state (roles/lab_diagram draws it). Changes nothing; sends no packet outside the
namespaces it inspects (the registry is asked from inside its own namespace).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
import sys


def run(*argv: str, timeout: float = 10) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)


def recent_journal(*selection: str) -> tuple[int, str]:
    """The last 15 lines of the lab units' journal of the last 30 minutes that `selection` picks
    (journalctl exits 1 when nothing matches)."""
    return run(
        "journalctl", "--no-pager", "-q", "-o", "short-iso",
        "--since", "-30min", "-n", "15", "-u", "shoplab-*", *selection,
    )  # fmt: skip


def run_json(*argv: str):
    rc, out = run(*argv)
    if rc != 0 or not out.strip():
        return []
    try:
        return json.loads(out)
    except ValueError:
        return []


def main() -> None:  # noqa: PLR0912, PLR0915 (one linear report)
    expected = json.loads(base64.b64decode(sys.argv[1]))
    instances = expected["instances"]
    tiers = expected["tiers"]
    prefix = expected["chain_prefix"]
    sections: list[list[str]] = []
    problems: list[str] = []
    notes: list[str] = []
    state: dict = {"mode": "netns", "bridges": {}, "namespaces": {}, "flows": [], "units": {}, "registry": {}}

    # Bridges and their ports.
    links = run_json("ip", "-j", "link", "show", "type", "bridge")
    addrs = {a["ifname"]: a for a in run_json("ip", "-j", "addr")}
    ports = run_json("bridge", "-j", "link")
    lines = []
    for link in links:
        name = link["ifname"]
        inet = [
            f"{i['local']}/{i['prefixlen']}"
            for i in addrs.get(name, {}).get("addr_info", [])
            if i["family"] == "inet"
        ]
        members = sorted(p["ifname"] for p in ports if p.get("master") == name)
        state["bridges"][name] = {"addresses": inet, "ports": members, "state": link.get("operstate", "")}
        lines.append(
            f"{name:<12} {link.get('operstate', ''):<5} {' '.join(inet):<16} "
            f"ports: {' '.join(members) or '-'}"
        )
    sections.append(["Bridges and their ports (ip link, bridge link)", "\n".join(lines) or "(no bridge)"])
    for tier_name, tier in tiers.items():
        bridge = state["bridges"].get(tier["bridge"])
        if bridge is None:
            problems.append(f"bridge {tier['bridge']} ({tier_name} tier) is missing")
        elif (
            f"{tier['host_address']}/{ipaddress.ip_network(tier['subnet']).prefixlen}"
            not in bridge["addresses"]
        ):
            problems.append(f"bridge {tier['bridge']} lacks the host address {tier['host_address']}")
    lab_bridges = {t["bridge"] for t in tiers.values()}
    known_veths = {i["veth_host"] for i in instances}
    for name, bridge in state["bridges"].items():
        if name in lab_bridges:
            for port in bridge["ports"]:
                if port not in known_veths:
                    notes.append(
                        f"{port} on {name} is not an instance the data lists (left over from scaling?)"
                    )

    # Namespaces: addresses, routes, listening sockets.
    present = {n["name"] for n in run_json("ip", "-j", "netns", "list")}
    lines = []
    for inst in instances:
        ns = inst["namespace"]
        entry = {
            "instance": inst["name"],
            "service": inst["service"],
            "tier": inst["tier"],
            "addresses": [],
            "routes": [],
            "listening": [],
            "bridge": None,
        }
        state["namespaces"][ns] = entry
        if ns not in present:
            problems.append(f"namespace {ns} ({inst['name']}) is missing")
            lines.append(f"{ns:<16} MISSING")
            continue
        for link in run_json("ip", "-n", ns, "-j", "addr"):
            for info in link.get("addr_info", []):
                if info["family"] == "inet" and link["ifname"] != "lo":
                    entry["addresses"].append(f"{info['local']}/{info['prefixlen']}")
        routes = run_json("ip", "-n", ns, "-j", "route")
        entry["routes"] = [
            f"{r['dst']}" + (f" via {r['gateway']}" if r.get("gateway") else "") for r in routes
        ]
        rc, out = run("ip", "netns", "exec", ns, "ss", "-Hltn")
        entry["listening"] = (
            sorted({line.split()[3] for line in out.splitlines() if line.strip()}) if rc == 0 else []
        )
        master = next((p.get("master") for p in ports if p["ifname"] == inst["veth_host"]), None)
        entry["bridge"] = master
        lines.append(
            f"{ns:<16} {' '.join(entry['addresses']) or '-':<16} on {master or '-':<12} "
            f"routes: {', '.join(entry['routes']) or '-'}; listening: {' '.join(entry['listening']) or '-'}"
        )
        want = f"{inst['address']}/{inst['prefixlen']}"
        if want not in entry["addresses"]:
            problems.append(f"{ns} lacks its address {want}")
        if not any(r.get("dst") == "default" and r.get("gateway") == inst["gateway"] for r in routes):
            problems.append(f"{ns} has no default route via {inst['gateway']} (its tier's bridge)")
        if master != inst["bridge"]:
            problems.append(
                f"{inst['veth_host']} is not a port of {inst['bridge']} (found {master or 'none'})"
            )
        if not any(addr.rsplit(":", 1)[-1] == str(inst["port"]) for addr in entry["listening"]):
            problems.append(f"nothing listens on port {inst['port']} in {ns} ({inst['name']})")
    extra = sorted(n for n in present if n.startswith("ns-") and n not in state["namespaces"])
    for ns in extra:
        notes.append(f"namespace {ns} runs but the data does not list it")
    sections.append(
        [
            "Namespaces: addresses, routes, listening sockets (ip netns exec … ip addr / ip route / ss)",
            "\n".join(lines),
        ]
    )

    # iptables: the lab's chains with packet counters.
    out_lines = []
    rc, rules = run("iptables", "-w", "-S")
    chains = sorted({m for m in re.findall(rf"^-N ({re.escape(prefix)}-\S+)", rules, re.M)})
    if not chains:
        problems.append(f"no {prefix}-* iptables chain: the firewall is not applied")
    for chain in chains:
        rc, listing = run("iptables", "-w", "-L", chain, "-n", "-v", "-x")
        out_lines.append(listing.rstrip())
        for line in listing.splitlines()[2:]:
            match = re.search(r"/\* (\S+) -> (\S+) \*/", line)
            if match:
                fields = line.split()
                state["flows"].append(
                    {
                        "from": match.group(1),
                        "to": match.group(2),
                        "packets": int(fields[0]),
                        "bytes": int(fields[1]),
                        "port": int(m.group(1)) if (m := re.search(r"dpt:(\d+)", line)) else 0,
                    }
                )
    rc, nat = run("iptables", "-w", "-t", "nat", "-S")
    for chain in sorted(set(re.findall(rf"^-N ({re.escape(prefix)}-\S+)", nat, re.M))):
        out_lines.append(
            "nat " + run("iptables", "-w", "-t", "nat", "-L", chain, "-n", "-v", "-x")[1].rstrip()
        )
    sections.append(
        ["iptables: the lab's chains with packet counters (iptables -L -n -v)", "\n\n".join(out_lines)]
    )

    # Connection tracking.
    rc, count = run("cat", "/proc/sys/net/netfilter/nf_conntrack_count")
    rc2, limit = run("cat", "/proc/sys/net/netfilter/nf_conntrack_max")
    state["conntrack"] = count.strip() if rc == 0 else "unknown"
    sections.append(
        [
            "Connection tracking (conntrack -C)",
            f"{state['conntrack']} tracked connections (max {limit.strip() if rc2 == 0 else '?'})",
        ]
    )

    # Units and recent failures.
    lines = []
    for inst in instances:
        unit = f"shoplab-{inst['name']}.service"
        rc, out = run("systemctl", "show", unit, "-p", "ActiveState,SubState,NRestarts,Result")
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        active = props.get("ActiveState", "unknown")
        state["units"][inst["name"]] = active
        lines.append(
            f"{unit:<28} {active}/{props.get('SubState', '?')}  result {props.get('Result', '?')}"
            f"  restarts {props.get('NRestarts', '?')}"
        )
        if active != "active":
            problems.append(f"unit {unit} is {active} ({inst['name']} is down)")
    for unit in ("shoplab-netns.service", "shoplab-firewall.service"):
        rc, out = run("systemctl", "is-active", unit)
        lines.append(f"{unit:<28} {out.strip()}")
        if out.strip() != "active":
            problems.append(f"unit {unit} is {out.strip()}")
    # journalctl -p warning: systemd's own messages about the units. The services' warnings and errors
    # are JSON lines on stderr, which journald files at priority info: found by their level instead.
    for title, selection in (
        ("Recent warnings and failures (journalctl -p warning, 30 min):", ["-p", "warning"]),
        ("The services' warnings and errors (their JSON lines, 30 min):",
         ["--grep", '"level":"(warning|error|critical)"']),
    ):  # fmt: skip
        rc, journal = recent_journal(*selection)
        lines.extend(["", title, journal.rstrip() if rc == 0 and journal.strip() else "(none)"])
    sections.append(["systemd units (systemctl show) and recent failures", "\n".join(lines)])

    # The registry's contents, asked from inside the registry's own namespace.
    registry = next(i for i in instances if i["service"] == "registry")
    rc, out = run(
        "ip",
        "netns",
        "exec",
        registry["namespace"],
        "curl",
        "-sS",
        "-m",
        "3",
        f"http://{registry['address']}:{registry['port']}/services",
    )
    lines = []
    try:
        services = json.loads(out)["services"] if rc == 0 else None
    except (ValueError, KeyError):
        services = None
    if services is None:
        problems.append(f"the registry at {registry['address']}:{registry['port']} does not answer")
        lines.append(out.strip() or "(no answer)")
    else:
        for service, entries in sorted(services.items()):
            state["registry"][service] = sorted(e["instance_id"] for e in entries)
            for e in entries:
                lines.append(
                    f"{service:<8} {e['instance_id']:<12} {e['address']}:{e['port']}"
                    f"  heartbeat {e['last_heartbeat_seconds_ago']:.1f}s ago"
                )
        for inst in instances:
            registered = inst["name"] in state["registry"].get(inst["service"], [])
            if inst["service"] in expected["registered_services"] and not registered:
                problems.append(f"{inst['name']} is not registered with the registry")
        for service, ids in state["registry"].items():
            for instance_id in ids:
                if instance_id not in {i["name"] for i in instances}:
                    notes.append(f"the registry lists {service} {instance_id}, which the data does not")
    sections.append(
        [
            f"Registry contents (GET http://{registry['address']}:{registry['port']}/services)",
            "\n".join(lines) or "(empty)",
        ]
    )

    print(json.dumps({"sections": sections, "problems": problems, "notes": notes, "state": state}))


if __name__ == "__main__":
    main()
