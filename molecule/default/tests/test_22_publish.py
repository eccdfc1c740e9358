"""The published port (roles/netns_firewall), the counterpart of `docker -p`: it answers on the address
it is bound to and on no other address of the lab host.

The scenario publishes as make up's lab-host container does (its host_vars): every address of the
container, for connections arriving on eth0 (Docker's proxy connects there; here this machine does).
The firewall's own default, loopback only (a lab host that is not a container), is applied by a
converge run with it and then put back."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest
from labdata import LAB_HOST_KIND, TESTINFRA_HOSTS, TIERS, TOPOLOGY, instance
from labtest import tail
from opsnetns import scenario_converge

testinfra_hosts = TESTINFRA_HOSTS

PORT = TOPOLOGY["shoplab_labhost_published_port"]
INTERFACE = TOPOLOGY["shoplab_labhost_publish_interface"]


def lab_host_address(lab) -> str:
    [link] = lab.json(f"ip -j -4 addr show dev {INTERFACE}")
    return link["addr_info"][0]["local"]


def from_lab_host(lab, address: str) -> str:
    """GET /health on address:PORT from inside the lab host: the HTTP status, or curl's failure."""
    result = lab.run(f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://{address}:{PORT}/health")
    return result.stdout.strip() if result.rc == 0 else f"failed: {result.stderr.strip()}"


def from_this_machine(address: str) -> str:
    """GET /health on the lab-host container's address from this machine (arrives on its eth0), once the
    route to it leaves through a Docker bridge rather than the default route."""
    route = json.loads(subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True,
                                      check=True).stdout)[0]  # fmt: skip
    default = json.loads(subprocess.run(["ip", "-j", "route", "show", "default"], capture_output=True,
                                        text=True, check=True).stdout)  # fmt: skip
    assert route.get("dev") and route["dev"] not in {r.get("dev") for r in default}, f"refusing: {route}"
    try:
        with urllib.request.urlopen(f"http://{address}:{PORT}/health", timeout=5) as response:
            return str(response.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except OSError as error:
        return f"failed: {error}"


def other_addresses(lab) -> list[str]:
    """Addresses of the lab host other than its eth0 one: loopback and the host's address on each tier."""
    return ["127.0.0.1", *(tier["host_address"] for tier in TIERS.values())]


def converge(extra: dict) -> None:
    result = scenario_converge("-e", json.dumps(extra))
    assert result.returncode == 0, tail(result)


def test_published_on_the_interface_docker_connects_to(lab):
    gateway = instance("gateway")
    rules = lab.check("iptables -t nat -S SHOPLAB-PREROUTING")
    dnat = [line for line in rules.split("\n") if "DNAT" in line]
    assert dnat == [
        f"-A SHOPLAB-PREROUTING -i {INTERFACE} -p tcp -m tcp --dport {PORT} -m addrtype --dst-type LOCAL "
        f"-j DNAT --to-destination {gateway['address']}:{gateway['port']}"
    ], rules
    assert from_this_machine(lab_host_address(lab)) == "200"


def test_the_lab_hosts_other_addresses_do_not_lead_to_the_gateway(lab):
    # Only what arrives on eth0 is redirected: from the lab host itself, nothing listens on the port.
    for address in [lab_host_address(lab), *other_addresses(lab)]:
        assert from_lab_host(lab, address).startswith("failed"), address


@pytest.fixture
def loopback_default(lab):
    """The firewall's default publish address (127.0.0.1, no interface), then the scenario's back."""
    converge({"netns_firewall_publish_address": "127.0.0.1", "netns_firewall_publish_interface": None})
    yield
    converge({})
    bridge = instance("gateway")["bridge"]
    assert lab.check(f"cat /proc/sys/net/ipv4/conf/{bridge}/route_localnet").strip() == "0"
    assert from_this_machine(lab_host_address(lab)) == "200"


# Two whole converges: seconds in a lab-host container, about 12 minutes each in a TCG lab VM. What it
# shows is netns_firewall's own default, the same on any systemd host: the container scenario shows it.
@pytest.mark.skipif(
    LAB_HOST_KIND == "vm", reason="two converges (~25 min under TCG) for the firewall's default"
)
def test_by_default_only_loopback_leads_to_the_gateway(lab, loopback_default):
    bridge = instance("gateway")["bridge"]
    # The kernel routes the host's loopback-sourced connections out of the gateway's bridge only with this.
    assert lab.check(f"cat /proc/sys/net/ipv4/conf/{bridge}/route_localnet").strip() == "1"
    assert from_lab_host(lab, "127.0.0.1") == "200"
    for address in [lab_host_address(lab), *other_addresses(lab)[1:]]:
        assert from_lab_host(lab, address).startswith("failed"), address
    assert from_this_machine(lab_host_address(lab)).startswith("failed")
    # Loopback only: 127.0.0.2 is loopback too, but not the bound address.
    assert from_lab_host(lab, "127.0.0.2").startswith("failed")
