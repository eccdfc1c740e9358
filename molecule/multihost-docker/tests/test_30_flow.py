"""The shop across the VMs: the gateway on the first VM balances over product instances on the other two,
an order is written to PostgreSQL on the last VM and read back, and the routing mesh answers on the
published port of every VM, from this machine over the lab VM network."""

from __future__ import annotations

import urllib.request

import pytest
from labtest import TOPOLOGY, order_and_read_back, round_robin_upstreams
from swdata import GATEWAY, HOSTS, INSTANCES, MANAGER, VMS, assert_routed_to_a_lab_vm, host_of, instance

DB = TOPOLOGY["shoplab_db_name"]


def test_an_instance_on_each_vm_answers_through_the_gateway():
    products = {i["name"] for i in INSTANCES if i["service"] == "product"}
    seen = round_robin_upstreams(MANAGER.http, products)
    assert products <= seen, f"round robin reached {sorted(seen)}, not every one of {sorted(products)}"
    answering = {host_of(i) for i in INSTANCES if i["name"] in seen} | {host_of(instance("gateway"))}
    assert answering == set(HOSTS), f"answers came from {sorted(answering)}"


def test_an_order_crosses_the_vms_and_is_in_postgresql():
    postgres = instance("postgres")
    vm = VMS[host_of(postgres)]
    assert vm is not MANAGER
    order = order_and_read_back(MANAGER.http)
    row = vm.check(
        f"docker exec {vm.container(postgres)} psql -U postgres -d {DB} -tAX -c "
        f"'SELECT total_cents FROM orders WHERE id = {int(order['id'])}'"
    )
    assert row.strip() == str(order["total_cents"])


@pytest.mark.parametrize("name", HOSTS)
def test_every_vm_answers_on_the_published_port(name):
    """The routing mesh: a VM that runs no gateway task hands the connection to the one that does."""
    address = VMS[name].address
    assert_routed_to_a_lab_vm(address)
    with urllib.request.urlopen(f"http://{address}:{GATEWAY['port']}/health", timeout=15) as answer:
        assert answer.status == 200
