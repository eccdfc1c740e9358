"""Collect the docker lab's live state on the lab host (read-only) and compare it with the data.

Run by roles/lab_status on the Docker host, beside statuslib.py, with one argument: the expected
topology as base64 JSON. Prints one JSON document: report sections, problems, notes and the
structured live state (roles/lab_diagram draws it). Changes nothing; talks to the registry only from
inside its own container (127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import json

import statuslib
from statuslib import Report, Run

REGISTRY_QUERY = (
    "import urllib.request,sys;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}/services', timeout=3).read().decode())"
)
# Docker's chains that carry the lab bridges' rules.
DOCKER_CHAINS = (
    ("filter", "FORWARD"),
    ("filter", "DOCKER"),
    ("filter", "DOCKER-ISOLATION-STAGE-1"),
    ("filter", "DOCKER-ISOLATION-STAGE-2"),
    ("filter", "DOCKER-USER"),
    ("nat", "DOCKER"),
    ("nat", "POSTROUTING"),
)


def expect_networks(expected: dict) -> dict:
    """Add to the data the lab's networks and each service's networks by their Docker names."""
    tiers = expected["tiers"]
    if expected["layout"] == "tiered":
        expected["networks"] = [t["docker_network"] for t in tiers.values()]
        expected["service_networks"] = {
            s: [tiers[t]["docker_network"] for t in found]
            for s, found in expected["service_networks"].items()
        }
    else:
        expected["networks"] = [expected["flat_network"]]
        expected["service_networks"] = {s: [expected["flat_network"]] for s in expected["services"]}
    return expected


def listening(run: Run, container: str) -> list[int]:
    """TCP ports in LISTEN (state 0A) from /proc/net/tcp{,6}: every image has cat, not every one has ss."""
    _rc, out = run("docker", "exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6")
    ports = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def routes(run: Run, container: str) -> list[str]:
    """A container's routes from /proc/net/route."""
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


def inspect_containers(run: Run, project: str) -> list[dict]:
    """The project's containers (docker inspect), by service, then name."""
    rc, ids = run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    containers = json.loads(run("docker", "inspect", *ids.split())[1]) if rc == 0 and ids.split() else []
    containers.sort(key=lambda c: (c["Config"]["Labels"].get("org.shoplab.service", ""), c["Name"]))
    return containers


def networks(run: Run, expected: dict, report: Report) -> dict[str, str]:
    """Docker networks of the lab and their containers; returns each network's bridge."""
    lines = []
    rc, names = run(
        "docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={expected['project']}"
    )
    found = (
        json.loads(run("docker", "network", "inspect", *names.split())[1])
        if rc == 0 and names.split()
        else []
    )
    bridges = {}
    for net in sorted(found, key=lambda n: n["Name"]):
        subnet = ", ".join(c["Subnet"] for c in net["IPAM"]["Config"])
        bridge = net["Options"].get("com.docker.network.bridge.name") or f"br-{net['Id'][:12]}"
        bridges[net["Name"]] = bridge
        members = sorted((c["Name"], c["IPv4Address"]) for c in net["Containers"].values())
        report.state["networks"][net["Name"]] = {
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
        if network not in report.state["networks"]:
            report.problems.append(f"Docker network {network} is missing")
    report.section(
        "Docker networks and their containers (docker network inspect)", "\n".join(lines) or "(none)"
    )
    return bridges


def service_of(c: dict) -> str:
    """The Shoplab service a container runs (its org.shoplab.service label)."""
    return c["Config"]["Labels"].get("org.shoplab.service", "?")


def health(c: dict) -> str:
    """A container's health (healthy, unhealthy, starting), or none without a healthcheck."""
    return c["State"].get("Health", {}).get("Status", "none")


def container(run: Run, c: dict, expected: dict, report: Report) -> str:
    """One container: its state entry and report line; its problems and notes go to the report."""
    name = c["Name"].lstrip("/")
    service = service_of(c)
    st = c["State"]
    health_status = health(c)
    nets = {n: s["IPAddress"] for n, s in c["NetworkSettings"]["Networks"].items()}
    entry = {
        "service": service,
        "tier": c["Config"]["Labels"].get("org.shoplab.tier", ""),
        "hostname": c["Config"]["Hostname"],
        "status": st["Status"],
        "health": health_status,
        "restarts": c["RestartCount"],
        "networks": nets,
        "listening": [],
        "routes": [],
    }
    report.state["containers"][name] = entry
    if st["Running"]:
        entry["listening"] = listening(run, name)
        entry["routes"] = routes(run, name)
    port = expected["services"].get(service, {}).get("port")
    if not st["Running"]:
        report.problems.append(f"container {name} ({service}) is {st['Status']} (exit code {st['ExitCode']})")
    elif health_status not in ("healthy", "none"):
        log = (st.get("Health", {}).get("Log") or [{}])[-1].get("Output", "").strip()[-200:]
        report.problems.append(
            f"container {name} ({service}) is {health_status}" + (f": {log}" if log else "")
        )
    elif port and port not in entry["listening"]:
        report.problems.append(f"nothing listens on port {port} in {name}")
    for net in expected["service_networks"].get(service, []):
        if net not in nets:
            report.problems.append(f"container {name} is not on network {net}")
    if c["RestartCount"]:
        report.notes.append(f"{name} restarted {c['RestartCount']} times")
    return (
        f"{name:<28} {st['Status']:<8} {health_status:<9} restarts {c['RestartCount']:<2} "
        f"{' '.join(f'{n}={a}' for n, a in nets.items())}\n{'':<30}"
        f"routes: {', '.join(entry['routes']) or '-'};"
        f" listening: {' '.join(map(str, entry['listening'])) or '-'}"
    )


def containers(run: Run, expected: dict, report: Report, found: list[dict]) -> None:
    """Containers: state, health, addresses, routes, listening sockets."""
    lines = [container(run, c, expected, report) for c in found]
    report.section(
        "Containers: state, health, addresses, routes, listening ports (docker ps, docker exec)",
        "\n".join(lines) or "(none)",
    )


def instance_counts(expected: dict, report: Report, found: list[dict]) -> None:
    """Healthy running instances of each service against the data's count."""
    wanted: dict[str, int] = {}
    for inst in expected["instances"]:
        wanted[inst["service"]] = wanted.get(inst["service"], 0) + 1
    running: dict[str, int] = {}
    for c in found:
        if c["State"]["Running"] and health(c) == "healthy":
            running[service_of(c)] = running.get(service_of(c), 0) + 1
    for service, count in wanted.items():
        have = running.get(service, 0)
        if have < count:
            report.problems.append(f"{service}: {have} healthy instance(s) run, the data says {count}")
        elif have > count:
            report.notes.append(f"{service}: {have} instances run, the data says {count} (scaled by hand?)")


def firewall(run: Run, bridges: dict[str, str], report: Report) -> None:
    """Docker's iptables rules for the lab's bridges, with packet counters."""
    out_lines = []
    lab_bridges = set(bridges.values())
    for table, chain in DOCKER_CHAINS:
        rc, listing = run("iptables", "-w", "-t", table, "-L", chain, "-n", "-v", "-x")
        if rc != 0:
            continue
        rows = listing.splitlines()
        keep = [r for r in rows[2:] if any(b in r for b in lab_bridges)]
        if keep:
            out_lines.append("\n".join([f"{table} {rows[0]}", rows[1], *keep]))
    report.section(
        "iptables: Docker's rules for the lab's bridges, with packet counters (iptables -L -n -v)",
        "\n\n".join(out_lines) or "(none)",
    )


def conntrack(run: Run, report: Report) -> None:
    """Connection tracking on the Docker host."""
    report.state["conntrack"] = statuslib.conntrack_count(run)
    report.section(
        "Connection tracking (conntrack -C)", f"{report.state['conntrack']} tracked connections on the host"
    )


def flows(expected: dict, report: Report) -> None:
    """Flows Docker lets through: containers that share a network reach each other (any port)."""
    by_service_nets: dict[str, set] = {}
    for entry in report.state["containers"].values():
        by_service_nets.setdefault(entry["service"], set()).update(entry["networks"])
    for flow in expected["flows"]:
        src, dst = flow["from"], flow["to"]
        shared = sorted(by_service_nets.get(src, set()) & by_service_nets.get(dst, set()))
        if src == "host":
            report.state["flows"].append({"from": src, "to": dst, "via": "published port"})
        elif shared:
            report.state["flows"].append({"from": src, "to": dst, "via": ", ".join(shared)})
        elif src in by_service_nets and dst in by_service_nets:
            report.problems.append(f"{src} cannot reach {dst}: they share no network")


def recent_failures(run: Run, report: Report) -> None:
    """Containers not running, unhealthy or restarted, with their last log lines."""
    lines = []
    for name, entry in report.state["containers"].items():
        if entry["status"] != "running" or entry["health"] not in ("healthy", "none") or entry["restarts"]:
            _rc, logs = run("docker", "logs", "--since", "30m", "--tail", "5", name)
            lines.append(
                f"{name}: {entry['status']}/{entry['health']}, restarts {entry['restarts']}\n{logs.rstrip()}"
            )
    report.section(
        "Recent failures (docker logs of unhealthy or stopped containers)", "\n".join(lines) or "(none)"
    )


def registry(run: Run, expected: dict, report: Report) -> None:
    """The registry's contents, asked inside its own container."""
    found = report.state["containers"]
    reg = next((n for n, e in found.items() if e["service"] == "registry" and e["status"] == "running"), None)
    lines = []
    if reg is None:
        report.problems.append("the registry container is not running")
    else:
        query = REGISTRY_QUERY.format(port=expected["services"]["registry"]["port"])
        _rc, out = run("docker", "exec", reg, "python3", "-c", query)
        try:
            listed = json.loads(out)["services"]
        except (ValueError, KeyError):
            listed = None
            report.problems.append(f"the registry does not answer: {out.strip()[-200:]}")
        if listed is not None:
            registered = report.state["registry"]
            lines = statuslib.registry_lines(listed, 14, registered)
            for name, entry in found.items():
                if (
                    entry["service"] in expected["registered_services"]
                    and entry["status"] == "running"
                    and entry["hostname"] not in registered.get(entry["service"], [])
                ):
                    report.problems.append(
                        f"{name} ({entry['hostname']}) is not registered with the registry"
                    )
            hostnames = {e["hostname"] for e in found.values() if e["status"] == "running"}
            for service, ids in registered.items():
                for instance_id in ids:
                    if instance_id not in hostnames:
                        report.notes.append(
                            f"the registry lists {service} {instance_id}, which no running container is"
                        )
    report.section(
        "Registry contents (GET /services inside the registry container)", "\n".join(lines) or "(empty)"
    )


def collect(run: Run, expected: dict) -> Report:
    """Every section, in the report's order."""
    expected = expect_networks(expected)
    report = Report(state={"mode": "docker", "networks": {}, "containers": {}, "flows": [], "registry": {}})
    found = inspect_containers(run, expected["project"])
    bridges = networks(run, expected, report)
    containers(run, expected, report, found)
    instance_counts(expected, report, found)
    firewall(run, bridges, report)
    conntrack(run, report)
    flows(expected, report)
    recent_failures(run, report)
    registry(run, expected, report)
    return report


def main() -> None:
    statuslib.main(collect, timeout=15)


if __name__ == "__main__":
    main()
