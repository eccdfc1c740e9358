"""The netns nginx baseline's temporary firewall allowance: a chain of its own, jumped to, removed after.

Real iptables, in a throwaway network namespace of the test's own: each namespace has its own tables,
so the host's rules are never touched.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from shoplab_bench import modenginx

CHAIN = "BENCH-OUTPUT"


@pytest.fixture
def netns():
    name = f"shoplab-benchtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield ["ip", "netns", "exec", name]
    subprocess.run(["ip", "netns", "delete", name], check=True)


def spec(prefix: list[str]) -> dict:
    rule = ["-d", "172.20.0.10/32", "-o", "br-frontend", "-p", "tcp", "--dport", 3090, "-j", "ACCEPT"]
    return {"firewall": {"prefix": prefix, "chain": CHAIN, "rules": [rule]}}


def rules(prefix: list[str], chain: str | None = None) -> list[str]:
    args = [*prefix, "iptables", "-w", "-S"] + ([chain] if chain else [])
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()


def test_rules_go_into_our_chain_jumped_to_first(netns):
    subprocess.run([*netns, "iptables", "-w", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT"], check=True)
    modenginx.add_rules(spec(netns))
    assert rules(netns, CHAIN) == [
        f"-N {CHAIN}",
        f"-A {CHAIN} -d 172.20.0.10/32 -o br-frontend -p tcp -m tcp --dport 3090 -j ACCEPT",
    ]
    output = rules(netns, "OUTPUT")
    assert output[1] == f"-A OUTPUT -j {CHAIN}", output


def test_adding_twice_jumps_once_and_keeps_one_copy_of_each_rule(netns):
    modenginx.add_rules(spec(netns))
    modenginx.add_rules(spec(netns))
    assert rules(netns, "OUTPUT").count(f"-A OUTPUT -j {CHAIN}") == 1
    assert len(rules(netns, CHAIN)) == 2


def test_removal_leaves_nothing_and_keeps_other_rules(netns):
    subprocess.run([*netns, "iptables", "-w", "-A", "OUTPUT", "-p", "udp", "-j", "ACCEPT"], check=True)
    before = rules(netns)
    modenginx.add_rules(spec(netns))
    modenginx.remove_rules(spec(netns))
    assert rules(netns) == before


def test_no_firewall_no_chain(netns):
    before = rules(netns)
    modenginx.add_rules({})
    modenginx.remove_rules({})
    assert rules(netns) == before
