"""Collect the docker lab's live state on the lab host (read-only) and compare it with the data.

Run by roles/lab_status (ansible.builtin.script) on the Docker host, with one argument: the expected
topology as base64 JSON. Prints one JSON document: report sections, problems, notes and the
structured live state (roles/lab_diagram draws it). Changes nothing; talks to the registry only from
inside its own container (127.0.0.1).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
import sys

REGISTRY_QUERY = (
    "import urllib.request,sys;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}/services', timeout=3).read().decode())"
)


def run(*argv: str, timeout: float = 15) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout if done.returncode == 0 else (done.stdout + done.stderr)


def listening(container: str) -> list[int]:
    """TCP ports in LISTEN (state 0A) from /proc/net/tcp{,6}: every image has cat, not every one has ss."""
    _rc, out = run("docker", "exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6")
    ports = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def routes(container: str) -> list[str]:
    _rc, out = run("docker", "exec", container, "cat", "/proc/net/route")
    found = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        dst = ".".join(str(b) for b in bytes.fromhex(f[1])[::-1])
        gw = ".".join(str(b) for b in bytes.fromhex(f[2])[::-1])
        bits = bin(int(f[7], 16)).count("1")
        found.append(
            ("default" if bits == 0 else f"{dst}/{bits}") + (f" via {gw}" if gw != "0.0.0.0" else "")
        )
    return found


def main() -> None:  # noqa: PLR0912, PLR0915 (one linear report)
    expected = json.loads(base64.b64decode(sys.argv[1]))
    project = expected["project"]
    services = expected["services"]
    tiers = expected["tiers"]
    if expected["layout"] == "tiered":
        expected["networks"] = [t["docker_network"] for t in tiers.values()]
        expected["service_networks"] = {
            s: [tiers[t]["docker_network"] for t in found]
            for s, found in expected["service_networks"].items()
        }
    else:
        expected["networks"] = [expected["flat_network"]]
        expected["service_networks"] = {s: [expected["flat_network"]] for s in services}
    wanted: dict[str, int] = {}
    for inst in expected["instances"]:
        wanted[inst["service"]] = wanted.get(inst["service"], 0) + 1
    sections: list[list[str]] = []
    problems: list[str] = []
    notes: list[str] = []
    state: dict = {"mode": "docker", "networks": {}, "containers": {}, "flows": [], "registry": {}}

    rc, ids = run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    containers = json.loads(run("docker", "inspect", *ids.split())[1]) if rc == 0 and ids.split() else []
    containers.sort(key=lambda c: (c["Config"]["Labels"].get("org.shoplab.service", ""), c["Name"]))

    # Networks of the lab.
    lines = []
    rc, names = run(
        "docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"
    )
    networks = (
        json.loads(run("docker", "network", "inspect", *names.split())[1])
        if rc == 0 and names.split()
        else []
    )
    bridges = {}
    for net in sorted(networks, key=lambda n: n["Name"]):
        subnet = ", ".join(c["Subnet"] for c in net["IPAM"]["Config"])
        bridge = net["Options"].get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        bridges[net["Name"]] = bridge
        members = sorted((c["Name"], c["IPv4Address"]) for c in net["Containers"].values())
        state["networks"][net["Name"]] = {
            "subnet": subnet,
            "bridge": bridge,
            "internal": net["Internal"],
            # Compose leaves Gateway out when it sets only the subnet: Docker then takes the first address.
            "gateway": ", ".join(
                c.get("Gateway") or str(next(ipaddress.ip_network(c["Subnet"]).hosts()))
                for c in net["IPAM"]["Config"]
            ),
            "containers": [{"name": n, "address": a} for n, a in members],
        }
        lines.append(
            f"{net['Name']:<18} {subnet:<15} bridge {bridge}{'  internal' if net['Internal'] else ''}"
        )
        lines.extend(f"    {n:<28} {a}" for n, a in members)
    for network in expected["networks"]:
        if network not in state["networks"]:
            problems.append(f"Docker network {network} is missing")
    sections.append(
        ["Docker networks and their containers (docker network inspect)", "\n".join(lines) or "(none)"]
    )

    # Containers: health, addresses, routes, listening sockets.
    lines = []
    running: dict[str, int] = {}
    for c in containers:
        name = c["Name"].lstrip("/")
        service = c["Config"]["Labels"].get("org.shoplab.service", "?")
        st = c["State"]
        health = st.get("Health", {}).get("Status", "none")
        nets = {n: s["IPAddress"] for n, s in c["NetworkSettings"]["Networks"].items()}
        entry = {
            "service": service,
            "tier": c["Config"]["Labels"].get("org.shoplab.tier", ""),
            "hostname": c["Config"]["Hostname"],
            "status": st["Status"],
            "health": health,
            "restarts": c["RestartCount"],
            "networks": nets,
            "listening": [],
            "routes": [],
        }
        state["containers"][name] = entry
        if st["Running"]:
            entry["listening"] = listening(name)
            entry["routes"] = routes(name)
            if health == "healthy":
                running[service] = running.get(service, 0) + 1
        lines.append(
            f"{name:<28} {st['Status']:<8} {health:<9} restarts {c['RestartCount']:<2} "
            f"{' '.join(f'{n}={a}' for n, a in nets.items())}\n{'':<30}"
            f"routes: {', '.join(entry['routes']) or '-'};"
            f" listening: {' '.join(map(str, entry['listening'])) or '-'}"
        )
        port = services.get(service, {}).get("port")
        if not st["Running"]:
            problems.append(f"container {name} ({service}) is {st['Status']} (exit code {st['ExitCode']})")
        elif health not in ("healthy", "none"):
            log = (st.get("Health", {}).get("Log") or [{}])[-1].get("Output", "").strip()[-200:]
            problems.append(f"container {name} ({service}) is {health}" + (f": {log}" if log else ""))
        elif port and port not in entry["listening"]:
            problems.append(f"nothing listens on port {port} in {name}")
        for net in expected["service_networks"].get(service, []):
            if net not in nets:
                problems.append(f"container {name} is not on network {net}")
        if c["RestartCount"]:
            notes.append(f"{name} restarted {c['RestartCount']} times")
    sections.append(
        [
            "Containers: state, health, addresses, routes, listening ports (docker ps, docker exec)",
            "\n".join(lines) or "(none)",
        ]
    )
    for service, count in wanted.items():
        have = running.get(service, 0)
        if have < count:
            problems.append(f"{service}: {have} healthy instance(s) run, the data says {count}")
        elif have > count:
            notes.append(f"{service}: {have} instances run, the data says {count} (scaled by hand?)")

    # Docker's iptables rules for the lab's bridges, with packet counters.
    out_lines = []
    lab_bridges = set(bridges.values())
    for table, chain in (
        ("filter", "FORWARD"),
        ("filter", "DOCKER"),
        ("filter", "DOCKER-ISOLATION-STAGE-1"),
        ("filter", "DOCKER-ISOLATION-STAGE-2"),
        ("filter", "DOCKER-USER"),
        ("nat", "DOCKER"),
        ("nat", "POSTROUTING"),
    ):
        rc, listing = run("iptables", "-w", "-t", table, "-L", chain, "-n", "-v", "-x")
        if rc != 0:
            continue
        rows = listing.splitlines()
        keep = [r for r in rows[2:] if any(b in r for b in lab_bridges)]
        if keep:
            out_lines.append("\n".join([f"{table} {rows[0]}", rows[1], *keep]))
    sections.append(
        [
            "iptables: Docker's rules for the lab's bridges, with packet counters (iptables -L -n -v)",
            "\n\n".join(out_lines) or "(none)",
        ]
    )

    rc, count = run("cat", "/proc/sys/net/netfilter/nf_conntrack_count")
    state["conntrack"] = count.strip() if rc == 0 else "unknown"
    sections.append(
        ["Connection tracking (conntrack -C)", f"{state['conntrack']} tracked connections on the host"]
    )

    # Flows Docker lets through: containers that share a network reach each other (any port).
    by_service_nets: dict[str, set] = {}
    for entry in state["containers"].values():
        by_service_nets.setdefault(entry["service"], set()).update(entry["networks"])
    for flow in expected["flows"]:
        src, dst = flow["from"], flow["to"]
        shared = sorted(by_service_nets.get(src, set()) & by_service_nets.get(dst, set()))
        if src == "host":
            state["flows"].append({"from": src, "to": dst, "via": "published port"})
        elif shared:
            state["flows"].append({"from": src, "to": dst, "via": ", ".join(shared)})
        elif src in by_service_nets and dst in by_service_nets:
            problems.append(f"{src} cannot reach {dst}: they share no network")

    # Recent failures: containers not running or unhealthy, with their last log lines.
    lines = []
    for name, entry in state["containers"].items():
        if entry["status"] != "running" or entry["health"] not in ("healthy", "none") or entry["restarts"]:
            rc, logs = run("docker", "logs", "--since", "30m", "--tail", "5", name)
            lines.append(
                f"{name}: {entry['status']}/{entry['health']}, restarts {entry['restarts']}\n{logs.rstrip()}"
            )
    sections.append(
        ["Recent failures (docker logs of unhealthy or stopped containers)", "\n".join(lines) or "(none)"]
    )

    # The registry's contents, asked inside its own container.
    registry = next(
        (
            n
            for n, e in state["containers"].items()
            if e["service"] == "registry" and e["status"] == "running"
        ),
        None,
    )
    lines = []
    if registry is None:
        problems.append("the registry container is not running")
    else:
        port = services["registry"]["port"]
        rc, out = run("docker", "exec", registry, "python3", "-c", REGISTRY_QUERY.format(port=port))
        try:
            listed = json.loads(out)["services"]
        except (ValueError, KeyError):
            listed = None
            problems.append(f"the registry does not answer: {out.strip()[-200:]}")
        if listed is not None:
            for service, entries in sorted(listed.items()):
                state["registry"][service] = sorted(e["instance_id"] for e in entries)
                for e in entries:
                    lines.append(
                        f"{service:<8} {e['instance_id']:<14} {e['address']}:{e['port']}"
                        f"  heartbeat {e['last_heartbeat_seconds_ago']:.1f}s ago"
                    )
            for name, entry in state["containers"].items():
                registered = entry["hostname"] in state["registry"].get(entry["service"], [])
                if (
                    entry["service"] in expected["registered_services"]
                    and entry["status"] == "running"
                    and not registered
                ):
                    problems.append(f"{name} ({entry['hostname']}) is not registered with the registry")
            hostnames = {e["hostname"] for e in state["containers"].values() if e["status"] == "running"}
            for service, ids in state["registry"].items():
                for instance_id in ids:
                    if instance_id not in hostnames:
                        notes.append(
                            f"the registry lists {service} {instance_id}, which no running container is"
                        )
    sections.append(
        ["Registry contents (GET /services inside the registry container)", "\n".join(lines) or "(empty)"]
    )

    print(json.dumps({"sections": sections, "problems": problems, "notes": notes, "state": state}))


if __name__ == "__main__":
    main()
