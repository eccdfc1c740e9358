"""Derive the lab's instances and its allowed-flow matrix from group_vars/all/topology.yml.

Plain functions, so that the roles (as Ansible filters), the tests and the docs all compute the
same answer from the same data. Nothing here knows about a mode's mechanics beyond what the
topology data says.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

HOST = "host"
TOPOLOGY_FILE = Path(__file__).resolve().parents[2] / "group_vars" / "all" / "topology.yml"


def load_topology(path: Path = TOPOLOGY_FILE) -> dict:
    """The topology data as a dict, for Python callers (tests, doc rendering, the benchmark)."""
    import yaml

    return yaml.safe_load(Path(path).read_text())


def default_counts(data: dict) -> dict:
    """The instance counts the data sets by default, keyed by variable name."""
    return {"product_instances": data["product_instances"], "order_instances": data["order_instances"]}


def _count(service: dict, counts: dict) -> int:
    """An instance count is a number, or the name of a variable whose value is in `counts`."""
    raw = service["instances"]
    value = counts[raw] if isinstance(raw, str) else raw
    return int(value)


class PlacementError(ValueError):
    """The placement data or the number of lab hosts is unusable; the message names the variable."""


PLACEMENTS = ("first", "last", "spread")


def _whole(value) -> int | None:
    """A whole number given as an int or as digits (a YAML value or an extra-var), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _span_problem(span, lab_hosts: int | None = None) -> str | None:
    """Why `span` cannot divide `lab_hosts` hosts of group lab into whole labs, or None."""
    hosts = _whole(span)
    if hosts is None or hosts < 1:
        return f"shoplab_lab_span must be a whole number >= 1, got {span!r}"
    if lab_hosts is not None and hosts > 1 and lab_hosts % hosts:
        return (
            f"shoplab_lab_span={hosts}: group lab has {lab_hosts} hosts, which do not form labs of {hosts} "
            "(LAB=vm: VMS, at most the VMs make vm booted)"
        )
    return None


def _placement_problem(rule, hosts: int, service: str) -> str | None:
    """Why `rule` cannot place a service over `hosts` lab hosts, or None (one host ignores a host number)."""
    if rule in PLACEMENTS:
        return None
    number = _whole(rule)
    if number is None or number < 1:
        choices = ", ".join(PLACEMENTS)
        return f"shoplab_placement.{service} must be one of {choices} or a host number >= 1, got {rule!r}"
    if number > hosts > 1:
        return f"shoplab_placement.{service}: host {number}, but the lab spans {hosts} hosts"
    return None


def shoplab_lab_problems(placement: dict, span, lab_hosts: int) -> list[str]:
    """Every reason the span or the placement cannot be used with `lab_hosts` hosts in group lab, each
    naming its variable: playbooks/preflight.yml refuses with these, the filters below raise the first."""
    problem = _span_problem(span, lab_hosts)
    if problem:
        return [problem]
    hosts = _whole(span)
    found = (_placement_problem(rule, hosts, service) for service, rule in placement.items())
    return [problem for problem in found if problem]


def shoplab_place(rule, index: int, hosts: int, service: str = "?") -> int:
    """The lab host (1..hosts) that runs instance `index` of a service placed by `rule`.

    `first` and `last` name a host by position; a number names it outright; `spread` deals the
    instances round the hosts starting at the second (instance 1 on host 2, ... wrapping to host 1),
    so that the first host, which runs the gateway, is the last to get more and every host of a
    three-host lab runs something the gateway balances over. One host: every rule means host 1.
    """
    problem = _span_problem(hosts) or _placement_problem(rule, hosts, service)
    if problem:
        raise PlacementError(problem)
    if rule == "first":
        return 1
    if rule == "last":
        return hosts
    if rule == "spread":
        return index % hosts + 1
    return min(_whole(rule), hosts)


def shoplab_lab_members(lab_hosts: list[str], hostname: str, span: int | str) -> list[str]:
    """The hosts that form one lab with `hostname`, in placement order (host 1 first).

    The hosts of group `lab` form labs of `span` consecutive hosts each: span 1 (the default) makes every
    lab host a lab of its own (one student, one VM); span 3 makes three VMs one lab.
    """
    hosts = list(lab_hosts)
    problem = _span_problem(span, len(hosts) if hostname in hosts else None)
    if problem:
        raise PlacementError(problem)
    if hostname not in hosts:
        return [hostname]
    span = _whole(span)
    start = hosts.index(hostname) // span * span
    return hosts[start : start + span]


def shoplab_gateway_mac(tier: dict, prefix: str) -> str:
    """A lab over several hosts: the tier's gateway MAC, the same on every host (`<prefix>:00:00:<vni>`)."""
    return f"{prefix}:00:00:{int(tier['vni']):02x}"


def shoplab_instance_mac(instance: dict, tiers: dict, prefix: str) -> str:
    """A lab over several hosts: an instance's MAC, `<prefix>:<vni>:<last two octets of its address>`, so
    every host knows it from the data (its neighbour and VXLAN entries) without asking by ARP."""
    octets = ipaddress.ip_address(instance["address"]).packed
    return f"{prefix}:{int(tiers[instance['tier']]['vni']):02x}:{octets[2]:02x}:{octets[3]:02x}"


def shoplab_instances(
    services: dict,
    tiers: dict,
    counts: dict | None = None,
    placement: dict | None = None,
    hosts: int | str = 1,
) -> list[dict]:
    """Every instance of every service, with its netns names and address, and `lab_host`: the number of the
    lab host that runs it (`placement`, over `hosts` lab hosts; one host: 1 for all).

    A service with a variable count (`instances: product_instances`) yields `product-1`, `product-2`…
    even when the count is 1, so names stay stable while scaling; a fixed singleton keeps its name.
    """
    counts = counts or {}
    placement = placement or {}
    hosts = int(hosts)
    out = []
    for name, svc in services.items():
        scalable = isinstance(svc["instances"], str)
        total = _count(svc, counts)
        tier = tiers[svc["tier"]]
        network = ipaddress.ip_network(tier["subnet"])
        for index in range(1, total + 1):
            instance = f"{name}-{index}" if scalable else name
            out.append(
                {
                    "name": instance,
                    "service": name,
                    "index": index,
                    "kind": svc["kind"],
                    "cpu_scheduling": svc.get("cpu_scheduling", "other"),
                    "tier": svc["tier"],
                    "port": int(svc["port"]),
                    "hostname": svc["hostname"],
                    "namespace": f"ns-{instance}",
                    "veth_host": f"ve-{instance}",
                    "bridge": tier["bridge"],
                    "address": str(network[int(svc["host_offset"]) + index - 1]),
                    "prefixlen": network.prefixlen,
                    "gateway": tier["host_address"],
                    "lab_host": shoplab_place(placement.get(name, "first"), index, hosts, name),
                }
            )
    return out


def shoplab_docker_networks(services: dict, flows: list[dict]) -> dict:
    """docker mode, tiered layout: the tier networks each service joins.

    Its own tier, plus the tier of every service it has an allowed flow to (a Docker network is
    one L2 segment: joining it is how a container reaches what lives there).
    """
    out = {}
    for name, svc in services.items():
        tiers = {svc["tier"]}
        for flow in flows:
            if flow["from"] == name:
                tiers.add(services[flow["to"]]["tier"])
        out[name] = sorted(tiers)
    return out


def shoplab_docker_instances(
    instances: list[dict], services: dict, tiers: dict, flows: list[dict], guest_offset: int
) -> list[dict]:
    """docker mode, tiered layout: every instance with its Compose service and its fixed address on each
    network it joins (the firewall's rules match these, as netns mode's match the namespaces').

    Scalable services get one Compose service per instance (`product-service-1`, ...): Compose gives a
    fixed address to a service, never to a replica. On its own tier's network an instance takes the
    netns offset (`host_offset` + index - 1, so product-1 is .20 in both modes); on another tier's
    network, `guest_offset` more. Raises ValueError when two instances would share an address.
    """
    networks = shoplab_docker_networks(services, flows)
    taken: dict[str, str] = {}
    out = []
    for inst in instances:
        svc = services[inst["service"]]
        scalable = isinstance(svc["instances"], str)
        offset = int(svc["host_offset"]) + inst["index"] - 1
        addresses = {}
        for tier in networks[inst["service"]]:
            subnet = ipaddress.ip_network(tiers[tier]["docker_subnet"])
            host = offset if tier == inst["tier"] else offset + int(guest_offset)
            if not 0 < host < subnet.num_addresses - 1:
                raise ValueError(f"{inst['name']}: no address {host} in {subnet} (docker network of {tier})")
            address = str(subnet[host])
            if address in taken:
                raise ValueError(f"{inst['name']} and {taken[address]} would share {address} on {tier}")
            taken[address] = inst["name"]
            addresses[tier] = address
        compose_service = f"{svc['compose_service']}-{inst['index']}" if scalable else svc["compose_service"]
        out.append(
            {
                **inst,
                "compose_service": compose_service,
                # The project's prefix and "-<n>", as Compose names a replica: the names stay what they were.
                "container_suffix": f"{svc['compose_service']}-{inst['index']}",
                "docker_addresses": addresses,
            }
        )
    return out


def _flow_allowed(source: str, target: str, flows: list[dict]) -> bool:
    return any(f["from"] == source and f["to"] == target for f in flows)


def shoplab_flow_matrix(instances: list[dict], services: dict, flows: list[dict]) -> list[dict]:
    """For every source (the host, then every instance) and every instance's address:port: allowed?

    Allowed only when the flow data lists it, inside a tier too, in both modes: netns's firewall sees
    bridged traffic through br_netfilter, docker's rules in DOCKER-USER see a Docker network's traffic
    the same way, so neither a tier nor a network is one open segment.
    """
    sources = [{"name": HOST, "service": HOST, "tier": None}, *instances]
    cells = []
    for src in sources:
        for dst in instances:
            if src["name"] == dst["name"]:
                continue
            cells.append(
                {
                    "source": src["name"],
                    "target": dst["name"],
                    "address": dst["address"],
                    "port": dst["port"],
                    "allowed": _flow_allowed(src["service"], dst["service"], flows),
                }
            )
    return cells


def shoplab_db_pool_total(
    services: dict,
    flows: list[dict],
    counts: dict,
    workers: int,
    pool_max: int,
    *,
    datastore: str = "postgres",
) -> int:
    """The most connections the services may hold open to `datastore` at once: every instance of a
    service with an allowed flow to it runs `workers` processes, each keeping a pool of up to `pool_max`
    (the services' DB_POOL_MAX; the pools open lazily, so this is their ceiling, reached under load)."""
    clients = {flow["from"] for flow in flows if flow["to"] == datastore}
    return (
        sum(_count(services[name], counts) for name in clients if name in services)
        * int(workers)
        * int(pool_max)
    )


class FilterModule:
    """Ansible filters: `shoplab_instances`, `shoplab_lab_members`, `shoplab_lab_problems`,
    `shoplab_gateway_mac`, `shoplab_instance_mac`, `shoplab_docker_networks`, `shoplab_docker_instances`,
    `shoplab_flow_matrix`, `shoplab_db_pool_total`."""

    def filters(self):
        return {
            "shoplab_instances": shoplab_instances,
            "shoplab_lab_members": shoplab_lab_members,
            "shoplab_lab_problems": shoplab_lab_problems,
            "shoplab_gateway_mac": shoplab_gateway_mac,
            "shoplab_instance_mac": shoplab_instance_mac,
            "shoplab_docker_networks": shoplab_docker_networks,
            "shoplab_docker_instances": shoplab_docker_instances,
            "shoplab_flow_matrix": shoplab_flow_matrix,
            "shoplab_db_pool_total": shoplab_db_pool_total,
        }
