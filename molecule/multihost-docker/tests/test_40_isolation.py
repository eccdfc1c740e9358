"""Isolation in the Swarm is by network: from every task's container, on the VM that runs it, a TCP
connection to every service's virtual address on every tier opens exactly when the source joins that
tier's overlay (shoplab_docker_service_networks, from the flow data). Inside one overlay Docker filters
nothing (no host chain sees overlay traffic), so the flows the data leaves out between two services of
one tier are open here, unlike netns mode and the single-host docker lab: the test counts them and says
so; across tiers every connection the data does not give is refused."""

from __future__ import annotations

import json
import shlex

from labtest import TIMEOUT_FACTOR, TOPOLOGY
from swdata import INSTANCES, MANAGER, NETWORKS, SERVICES, TIERS, VMS, host_of, swarm_service

TIMEOUT = 3 * TIMEOUT_FACTOR
# `<address>:<port> open|closed` per target, connections in parallel, by bash in the container.
PROBE = (
    'for t in "$@"; do ( timeout {timeout} bash -c "exec 3<>/dev/tcp/${{t%:*}}/${{t#*:}}" 2>/dev/null '
    '&& echo "$t open" || echo "$t closed" ) & done; wait'
)


def virtual_addresses() -> list[dict]:
    """Every service's virtual address on each tier's overlay: [{service, tier, address, port}]."""
    tiers = {spec["docker_network"]: tier for tier, spec in TIERS.items()}
    listed = MANAGER.check("docker network ls --no-trunc --format '{{.ID}} {{.Name}}'").split("\n")
    names = dict(line.split() for line in listed if line.strip())
    out = []
    for inst in INSTANCES:
        [service] = json.loads(MANAGER.check(f"docker service inspect {swarm_service(inst)}"))
        for vip in service["Endpoint"].get("VirtualIPs", []):
            tier = tiers.get(names.get(vip["NetworkID"], ""))
            if tier:  # not the routing mesh's ingress network
                address = vip["Addr"].split("/")[0]
                port = SERVICES[inst["service"]]["port"]
                out.append({"target": inst["name"], "tier": tier, "address": address, "port": port})
    return out


def test_isolation_by_network_across_vms():
    targets = virtual_addresses()
    assert {t["tier"] for t in targets} == set(TIERS)
    by_name = {i["name"]: i for i in INSTANCES}
    flows = {(f["from"], f["to"]) for f in TOPOLOGY["shoplab_allowed_flows"]}
    script = shlex.quote(PROBE.format(timeout=TIMEOUT))
    wrong, open_in_tier = [], []
    for inst in INSTANCES:
        vm = VMS[host_of(inst)]
        cells = [t for t in targets if t["target"] != inst["name"]]
        endpoints = " ".join(f"{t['address']}:{t['port']}" for t in cells)
        out = vm.check(f"docker exec {vm.container(inst)} bash -c {script} probe {endpoints}")
        states = dict(line.split() for line in out.splitlines())
        for target in cells:
            opened = states[f"{target['address']}:{target['port']}"] == "open"
            joins = target["tier"] in NETWORKS[inst["service"]]
            cell = f"{inst['name']} ({vm.name}) -> {target['target']} on {target['tier']}"
            if opened != joins:
                expected, got = ("open" if joins else "refused"), ("open" if opened else "refused")
                wrong.append(f"{cell}: expected {expected}, got {got}")
            elif opened and (inst["service"], by_name[target["target"]]["service"]) not in flows:
                open_in_tier.append(cell)
    print(f"{len(open_in_tier)} connections open inside a shared overlay that the flow data leaves out")
    assert not wrong, f"{len(wrong)} wrong cells:\n" + "\n".join(wrong)


def test_some_service_is_kept_off_some_tier():
    """Guard against a vacuous matrix: refused cells exist (the gateway joins no database overlay)."""
    assert any(set(TIERS) - set(NETWORKS[name]) for name in SERVICES)
