"""The isolation matrix: from every source (the host and every namespace) to every lab address:port,
a TCP connection succeeds exactly when the flow data allows it, and a blocked one fails within 3 s."""

from __future__ import annotations

import json
import shlex

from labdata import INSTANCES, MATRIX, TESTINFRA_HOSTS, TIERS
from labtest import TCP_PROBE

testinfra_hosts = TESTINFRA_HOSTS

TIMEOUT = 3.0
# A port nothing of the lab uses, for a listener on the host itself.
HOST_PROBE_PORT = 18080


PROBE = TCP_PROBE


def probe(lab, source: str, targets: list[tuple[str, int]]) -> list[dict]:
    """[{"address", "port", "ok", "seconds", "error"}], one per target, in order."""
    prefix = "" if source == "host" else f"ip netns exec ns-{source} "
    cells = [[f"{address}:{port}", address, port] for address, port in targets]
    command = f"{prefix}python3 -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(cells))} {TIMEOUT}"
    return [
        {"address": address, "port": port, "ok": ok, "seconds": seconds, "error": "" if ok else detail}
        for (_label, address, port), ok, detail, seconds in lab.json(command)
    ]


def test_every_target_routes_through_a_lab_bridge(lab):
    """Probes only ever go to the lab: from the host every lab address leaves through a lab bridge."""
    bridges = {t["bridge"] for t in TIERS.values()}
    for inst in INSTANCES:
        assert lab.route_dev(inst["address"]) in bridges, inst["address"]


def test_isolation_matrix(lab):
    wrong = []
    slow = []
    sources = sorted({c["source"] for c in MATRIX})
    for source in sources:
        cells = [c for c in MATRIX if c["source"] == source]
        results = probe(lab, source, [(c["address"], c["port"]) for c in cells])
        for cell, result in zip(cells, results, strict=True):
            if result["ok"] != cell["allowed"]:
                wrong.append(
                    f"{source} -> {cell['target']} {cell['address']}:{cell['port']}: expected "
                    f"{'open' if cell['allowed'] else 'blocked'}, got "
                    f"{'open' if result['ok'] else 'blocked (' + result['error'] + ')'}"
                )
            if not result["ok"] and result["seconds"] > TIMEOUT:
                slow.append(f"{source} -> {cell['target']}: blocked after {result['seconds']:.1f}s")
    total = len(MATRIX)
    assert not wrong, f"{len(wrong)} wrong cells of {total}:\n" + "\n".join(wrong)
    assert not slow, "blocked probes slower than 3 s:\n" + "\n".join(slow)


def test_matrix_denies_something_and_allows_something():
    """Guard against a vacuous matrix."""
    assert any(c["allowed"] for c in MATRIX)
    assert any(not c["allowed"] for c in MATRIX)


def test_database_tier_opens_nothing_out(lab):
    """Nothing in the database tier reaches another tier, nor the host itself (a listener is started on
    the host for the duration of the probe, so a refusal is the firewall's, not an empty port's)."""
    database = [i for i in INSTANCES if i["tier"] == "database"]
    others = [i for i in INSTANCES if i["tier"] != "database"]
    server = f"timeout 30 python3 -m http.server {HOST_PROBE_PORT}"
    pid = lab.check(f"nohup {server} >/dev/null 2>&1 & echo $!").strip()
    lab.check("sleep 1")
    host_targets = [(t["host_address"], HOST_PROBE_PORT) for t in TIERS.values()]
    try:
        # The listener answers from the host itself.
        assert [r["ok"] for r in probe(lab, "host", [("127.0.0.1", HOST_PROBE_PORT)])] == [True]
        for src in database:
            results = probe(lab, src["name"], [(i["address"], i["port"]) for i in others] + host_targets)
            assert not [r for r in results if r["ok"]], results
    finally:
        lab.run(f"kill {int(pid)}")


def test_ipv6_closed_on_lab_links(lab):
    rules = lab.check("ip6tables -S")
    for tier in TIERS.values():
        assert f"-A SHOPLAB-FORWARD -i {tier['bridge']} -j DROP" in rules
        assert f"-A SHOPLAB-INPUT -i {tier['bridge']} -j DROP" in rules
        assert f"-A SHOPLAB-OUTPUT -o {tier['bridge']} -j DROP" in rules
    for builtin in ("FORWARD", "INPUT", "OUTPUT"):
        assert f"-A {builtin} -j SHOPLAB-{builtin}" in rules


def test_admin_rules_survived_the_deployment(lab):
    """prepare.yml added rules of the admin's own; the lab's firewall left them alone."""
    rules = lab.check("iptables -S")
    for rule in ("-A ADMIN-TEST -s 198.51.100.0/24 -j DROP", "-A FORWARD -j ADMIN-TEST"):
        assert rule in rules
