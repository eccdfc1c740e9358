"""Collect one host's part of a docker lab over several hosts (a Docker Swarm, roles/docker_swarm) and
compare it with the data (read-only).

Run by roles/lab_status on each host of the lab, beside statuslib.py and status_docker.py (whose container
helpers it shares), with one argument: the expected topology as base64 JSON. Every host reports its Swarm
membership, the lab's overlay networks it carries (VNI, subnet, internal, encrypted, peers), the tasks it
runs (state, health, addresses, routes, listening ports), its Swarm firewall chains and conntrack; the
manager adds the nodes (each one's lab-host label) and where each service's task runs; the host that runs
the registry's task asks it for every instance of the lab. Prints one JSON document, as status_docker.py.
"""

from __future__ import annotations

import json

import status_docker
import statuslib
from statuslib import Report, Run, run_json

STACK_LABEL = "com.docker.stack.namespace"


def _lines(run: Run, *argv: str) -> list[dict]:
    """A docker command's `--format '{{json .}}'` output: one JSON object per line ([] when it fails)."""
    rc, out = run(*argv)
    if rc != 0:
        return []
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def service_name(expected: dict, inst: dict) -> str:
    """An instance's Swarm service: the stack's name, then its Compose service's (each lab instance comes
    with it, from the filter shoplab_docker_instances that roles/docker_stack renders the stack with)."""
    return f"{expected['project']}_{inst['compose_service']}"


def swarm(run: Run, expected: dict, report: Report) -> bool:
    """This host's membership (docker info): active, the manager or a worker as the data says; True on the
    manager."""
    info = run_json(run, "docker", "info", "--format", "{{json .Swarm}}") or {}
    number = expected["host"]["number"]
    state = info.get("LocalNodeState", "unknown")
    manager = bool(info.get("ControlAvailable"))
    address = info.get("NodeAddr", "")
    report.state["swarm"] = {
        "state": state,
        "node_id": info.get("NodeID", ""),
        "address": address,
        "manager": manager,
    }
    if state != "active":
        report.problems.append(f"this host is not in a Swarm (docker info: {state})")
    elif manager != (number == 1):
        want = "the manager" if number == 1 else "a worker"
        report.problems.append(
            f"lab host {number} should be {want}, it is {'a manager' if manager else 'a worker'}"
        )
    if state == "active" and address != expected["underlay_address"]:
        report.problems.append(
            f"this node advertises {address}, not its underlay address {expected['underlay_address']}"
        )
    managers = ", ".join(m.get("Addr", "?") for m in info.get("RemoteManagers") or []) or "-"
    report.section(
        "Swarm membership (docker info)",
        f"{state}, {'manager' if manager else 'worker'}, node {info.get('NodeID', '-')} at "
        f"{info.get('NodeAddr', '-')}; managers: {managers}",
    )
    return manager and state == "active"


def nodes(run: Run, expected: dict, report: Report) -> dict[str, int]:
    """The manager's view of the nodes (docker node inspect): each node's lab-host label; returns the lab-host
    number of each node's hostname."""
    ids = [n["ID"] for n in _lines(run, "docker", "node", "ls", "--format", "{{json .}}")]
    found = run_json(run, "docker", "node", "inspect", *ids) if ids else []
    label, span = expected["node_label"], expected["host"]["count"]
    numbers, lines = {}, []
    for node in sorted(found, key=lambda n: n["Spec"].get("Labels", {}).get(label, "")):
        hostname = node["Description"]["Hostname"]
        number = node["Spec"].get("Labels", {}).get(label)
        status, address = node["Status"]["State"], node["Status"].get("Addr", "")
        role = "manager" if node.get("ManagerStatus") else "worker"
        report.state["nodes"][hostname] = {
            "lab_host": number,
            "status": status,
            "address": address,
            "role": role,
        }
        lines.append(f"{hostname:<16} {address:<16} {status:<6} {role:<8} {label}={number or '-'}")
        if number is None:
            report.problems.append(f"node {hostname} has no {label} label")
            continue
        numbers[hostname] = int(number)
        if status != "ready":
            report.problems.append(f"node {hostname} (lab host {number}) is {status}")
    missing = sorted(set(range(1, span + 1)) - set(numbers.values()))
    if missing:
        report.problems.append(f"no node carries {label}={', '.join(map(str, missing))}")
    report.section(
        "Swarm nodes and their lab-host labels (docker node inspect)", "\n".join(lines) or "(none)"
    )
    return numbers


def services(run: Run, expected: dict, report: Report, numbers: dict[str, int]) -> None:
    """The manager's view of the stack: one service per instance, its replicas, the node of its running
    task."""
    stack = expected["project"]
    by_stack = f"label={STACK_LABEL}={stack}"
    listed = {
        s["Name"]: s
        for s in _lines(run, "docker", "service", "ls", "--filter", by_stack, "--format", "{{json .}}")
    }
    lines = []
    for inst in expected["lab_instances"]:
        name = service_name(expected, inst)
        service = listed.get(name)
        if service is None:
            report.problems.append(f"service {name} ({inst['name']}) is missing from the stack")
            lines.append(f"{name:<26} MISSING")
            continue
        tasks = _lines(run, "docker", "service", "ps", "--filter", "desired-state=running", "--format",
                       "{{json .}}", name)  # fmt: skip
        running = {t.get("Node", "") for t in tasks if t.get("CurrentState", "").startswith("Running")}
        where = sorted(numbers[n] for n in running if n in numbers)
        # A node without its label is a problem of its own (nodes()): name it, judge no placement on it.
        unlabelled = sorted(running - set(numbers))
        report.state["services"][inst["name"]] = {"replicas": service["Replicas"], "lab_hosts": where}
        on = [f"lab host {n}" for n in where] + [f"node {n} (no label)" for n in unlabelled]
        lines.append(f"{name:<26} {service['Replicas']:<5} on {', '.join(on) or '-'}")
        if service["Replicas"] != "1/1":
            report.problems.append(f"service {name} runs {service['Replicas']} replicas")
        if running and not unlabelled and where != [inst["lab_host"]]:
            hosts = ", ".join(map(str, where))
            report.problems.append(
                f"{inst['name']} runs on lab host {hosts}, the placement says {inst['lab_host']}"
            )
    known = {service_name(expected, i) for i in expected["lab_instances"]}
    for name in sorted(set(listed) - known):
        report.notes.append(f"service {name} runs in the stack but the data does not list it")
    report.section(
        "Stack services and where their tasks run (docker service ls, docker service ps)", "\n".join(lines)
    )


def overlays(run: Run, expected: dict, report: Report) -> None:
    """The lab's overlay networks this host carries (an overlay exists on a worker once a local task joins
    it): subnet, internal, encrypted, VNI, the peers it sends VXLAN to, the local tasks on it."""
    tiers = {t["docker_network"]: name for name, t in expected["tiers"].items()}
    present = {n["Name"] for n in _lines(run, "docker", "network", "ls", "--format", "{{json .}}")}
    names = sorted(present & set(tiers))
    found = run_json(run, "docker", "network", "inspect", *names) if names else []
    lines = []
    for net in found:
        tier = expected["tiers"][tiers[net["Name"]]]
        subnet = ", ".join(c["Subnet"] for c in net["IPAM"]["Config"])
        options = net.get("Options") or {}
        entry = {
            "tier": tiers[net["Name"]],
            "driver": net["Driver"],
            "scope": net["Scope"],
            "subnet": subnet,
            "internal": net["Internal"],
            "encrypted": "encrypted" in options,
            "vni": options.get("com.docker.network.driver.overlay.vxlanid_list", ""),
            "peers": sorted(p["IP"] for p in net.get("Peers") or []),
            # The local tasks on it (not the overlay's own load-balancer endpoint).
            "containers": sorted(
                (c["Name"], c["IPv4Address"])
                for c in (net.get("Containers") or {}).values()
                if not c["Name"].endswith("-endpoint")
            ),
        }
        report.state["networks"][net["Name"]] = entry
        want = {
            "driver": "overlay",
            "scope": "swarm",
            "subnet": tier["docker_subnet"],
            "internal": bool(tier.get("docker_internal")),
            "encrypted": bool(expected["encrypted"]),
        }
        for field, value in want.items():
            if entry[field] != value:
                report.problems.append(
                    f"overlay {net['Name']}: {field} is {entry[field]}, the data says {value}"
                )
        flags = "".join(
            [", internal" if entry["internal"] else "", ", encrypted" if entry["encrypted"] else ""]
        )
        lines.append(f"{net['Name']:<18} {subnet:<15} VNI {entry['vni'] or '-'}{flags}; "
                     f"peers {', '.join(entry['peers']) or '-'}")  # fmt: skip
        lines.extend(f"    {name:<40} {address}" for name, address in entry["containers"])
    needed = sorted(
        {n for i in expected["instances"] for n in expected["service_networks"].get(i["service"], [])}
    )
    for network in needed:
        if network not in report.state["networks"]:
            report.problems.append(f"overlay {network} is not on this host, which runs tasks that join it")
    report.section(
        "The lab's overlay networks on this host (docker network inspect)", "\n".join(lines) or "(none)"
    )


def tasks(run: Run, expected: dict, report: Report) -> list[dict]:
    """The stack's task containers on this host (reusing status_docker's container report); a placed
    instance without a running task is a problem."""
    rc, ids = run("docker", "ps", "-aq", "--filter", f"label={STACK_LABEL}={expected['project']}")
    found = json.loads(run("docker", "inspect", *ids.split())[1]) if rc == 0 and ids.split() else []
    found.sort(key=lambda c: (c["Config"]["Labels"].get("org.shoplab.instance", ""), c["Name"]))
    lines = [status_docker.container(run, c, expected, report) for c in found]
    for c in found:
        entry = report.state["containers"][c["Name"].lstrip("/")]
        entry["instance"] = c["Config"]["Labels"].get("org.shoplab.instance", "")
    running = {e["instance"] for e in report.state["containers"].values() if e["status"] == "running"}
    for inst in expected["instances"]:
        if inst["name"] not in running:
            report.problems.append(
                f"no task of {inst['name']} runs on this host, which the placement gives it"
            )
    report.section(
        "Tasks on this host: state, health, addresses, routes, listening ports (docker ps, docker exec)",
        "\n".join(lines) or "(none)",
    )
    return found


def firewall(run: Run, expected: dict, report: Report) -> None:
    """The Swarm's own chains (roles/docker_swarm) with packet counters."""
    out, prefix = [], expected["chain_prefix"]
    for chain in (f"{prefix}-INPUT", f"{prefix}-FORWARD"):
        rc, listing = run("iptables", "-w", "-L", chain, "-n", "-v", "-x")
        if rc != 0:
            report.problems.append(f"iptables chain {chain} is missing: the Swarm's firewall is not applied")
            continue
        out.append(listing.rstrip())
    report.section("iptables: the Swarm's chains with packet counters (iptables -L -n -v)", "\n\n".join(out))


def registry(run: Run, expected: dict, report: Report) -> None:
    """On the host that runs the registry's task: its contents, asked inside it, against every instance of
    the lab (each registers under its INSTANCE_ID, its instance's name)."""
    found = report.state["containers"]
    reg = next((n for n, e in found.items() if e["service"] == "registry" and e["status"] == "running"), None)
    if reg is None:
        where = next(i["lab_host"] for i in expected["lab_instances"] if i["service"] == "registry")
        if where != expected["host"]["number"]:
            report.section(
                "Registry contents", f"(the registry's task runs on lab host {where}: see its report)"
            )
            return
        report.problems.append("the registry's task is not running")
        report.section("Registry contents", "(not running)")
        return
    query = status_docker.REGISTRY_QUERY.format(port=expected["services"]["registry"]["port"])
    _rc, out = run("docker", "exec", reg, "python3", "-c", query)
    lines = []
    try:
        listed = json.loads(out)["services"]
    except (ValueError, KeyError):
        report.problems.append(f"the registry does not answer: {out.strip()[-200:]}")
        listed = None
    if listed is not None:
        registered = report.state["registry"]
        lines = statuslib.registry_lines(listed, 12, registered)
        for inst in expected["lab_instances"]:
            if inst["service"] in expected["registered_services"] and inst["name"] not in registered.get(
                inst["service"], []
            ):
                report.problems.append(f"{inst['name']} is not registered with the registry")
        names = {i["name"] for i in expected["lab_instances"]}
        for service, ids in registered.items():
            report.notes.extend(
                f"the registry lists {service} {i}, which the data does not" for i in ids if i not in names
            )
    report.section(
        "Registry contents (GET /services inside the registry's task)", "\n".join(lines) or "(empty)"
    )


def collect(run: Run, expected: dict) -> Report:
    """Every section, in the report's order (the manager's two after its membership)."""
    expected = status_docker.expect_networks(expected)
    report = Report(
        state={
            "mode": "swarm",
            "host": expected["host"],
            "swarm": {},
            "nodes": {},
            "services": {},
            "networks": {},
            "containers": {},
            "flows": [],
            "registry": {},
        }
    )
    if swarm(run, expected, report):
        services(run, expected, report, nodes(run, expected, report))
    overlays(run, expected, report)
    tasks(run, expected, report)
    firewall(run, expected, report)
    status_docker.conntrack(run, report)
    status_docker.flows(expected, report)
    registry(run, expected, report)
    return report


def main() -> None:
    statuslib.main(collect, timeout=15)


if __name__ == "__main__":
    main()
