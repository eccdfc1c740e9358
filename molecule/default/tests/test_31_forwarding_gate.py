"""IPv4 forwarding follows the lab firewall (roles/netns_firewall): on only while its rules are live, off
once its unit stops or fails to load them, so the tiers never route to each other without the rules,
and the network's boot-time oneshot builds nothing until the rules are live. Each test puts the firewall
back as it found it."""

from __future__ import annotations

import contextlib
import shlex
import time

import pytest
from labdata import TESTINFRA_HOSTS, instance

testinfra_hosts = TESTINFRA_HOSTS

FORWARD = "/proc/sys/net/ipv4/ip_forward"
UNIT = "shoplab-firewall.service"
RULES = "/etc/shoplab/firewall/iptables.rules"
# One TCP connection with a 3 s timeout: prints "ok" or "fail <why>".
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
    "    print('ok')\n"
    "except OSError as error:\n"
    "    print('fail', error)\n"
)


def forwarding(lab) -> str:
    return lab.check(f"cat {FORWARD}").strip()


def gateway_reaches_product(lab) -> bool:
    """A real TCP connection across tiers, on an allowed flow (gateway, frontend -> product-1, backend),
    from the gateway's namespace: it needs the host to route between the two bridges."""
    gateway, product = instance("gateway"), instance("product")
    assert gateway["tier"] != product["tier"]
    out = lab.check(
        f"ip netns exec {gateway['namespace']} python3 -c {shlex.quote(CONNECT)} "
        f"{product['address']} {product['port']}"
    )
    return out.strip() == "ok"


def firewall_back(lab) -> None:
    """Start the firewall again and wait until the shop answers through the gateway (the instances
    reconnect to their datastores, the gateway takes back the instances it ejected)."""
    lab.run(f"systemctl reset-failed {UNIT}")
    lab.check(f"systemctl start {UNIT}")
    assert forwarding(lab) == "1"
    assert gateway_reaches_product(lab)
    deadline = time.monotonic() + 60
    while True:
        status = None
        with contextlib.suppress(AssertionError):
            status, _, _ = lab.http("GET", "/api/products?per_page=5")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 200


@pytest.fixture
def firewall_restored(lab):
    yield
    firewall_back(lab)


def test_forwarding_is_on_with_the_firewall_loaded(lab):
    assert lab.check(f"systemctl is-active {UNIT}").strip() == "active"
    assert lab.run("shoplab-firewall check").rc == 0
    assert forwarding(lab) == "1"
    assert gateway_reaches_product(lab)


def test_a_stopped_firewall_stops_routing_between_the_tiers(lab, firewall_restored):
    lab.check(f"systemctl stop {UNIT}")
    assert forwarding(lab) == "0"
    assert not gateway_reaches_product(lab)
    # The tiers are apart because nothing routes, not because the lab stopped: its units still run.
    product = instance("product")
    assert lab.check(f"systemctl is-active shoplab-{product['name']}.service").strip() == "active"
    assert lab.run("shoplab-firewall check").rc != 0


def test_a_firewall_that_fails_to_load_keeps_the_tiers_apart(lab, firewall_restored):
    lab.check(f"cp -p {RULES} {RULES}.test-good")
    try:
        lab.check(f"echo 'not an iptables rule' >> {RULES}")
        restart = lab.run(f"systemctl restart {UNIT}")
        assert restart.rc != 0
        assert lab.run(f"systemctl is-failed {UNIT}").stdout.strip() == "failed"
        assert forwarding(lab) == "0"
        assert not gateway_reaches_product(lab)
    finally:
        lab.check(f"mv {RULES}.test-good {RULES}")


def test_the_network_oneshot_waits_for_the_firewalls_rules(lab):
    """At boot shoplab-netns.service starts after the firewall and only once `shoplab-firewall check`
    passes (rules live, forwarding on): a firewall that failed to load leaves no lab network at all."""
    shown = lab.check("systemctl show shoplab-netns.service -p After -p Wants -p ExecStartPre")
    assert "shoplab-firewall.service" in shown.split("After=", 1)[1].split("\n", 1)[0]
    assert "shoplab-firewall check" in shown
    # And that check is real: it fails while the firewall is stopped.
    lab.check(f"systemctl stop {UNIT}")
    try:
        assert lab.run("/usr/local/sbin/shoplab-firewall check").rc != 0
    finally:
        firewall_back(lab)
