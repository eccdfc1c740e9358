"""The shop across the VMs: the gateway on the first VM balances over product and order instances on the
others, an order is written to PostgreSQL on the last VM and read back, and this machine reaches the
published gateway on the first VM's address over the lab VM network."""

from __future__ import annotations

import urllib.request

from labtest import order_and_read_back, round_robin_upstreams
from mhdata import (
    GATEWAY_VM,
    HOSTS,
    INSTANCES,
    PUBLISHED_PORT,
    TOPOLOGY,
    VMS,
    assert_routed_to_a_lab_vm,
    host_of,
    instance,
)

SOCKET_DIR = TOPOLOGY["shoplab_netns_postgres_socket_dir"]
DB = TOPOLOGY["shoplab_db_name"]


def test_an_instance_on_each_vm_answers_through_the_gateway():
    products = {i["name"] for i in INSTANCES if i["service"] == "product"}
    seen = round_robin_upstreams(GATEWAY_VM.http, products)
    assert products <= seen, f"round robin reached {sorted(seen)}, not every one of {sorted(products)}"
    answering_vms = {host_of(i) for i in INSTANCES if i["name"] in seen} | {GATEWAY_VM.name}
    assert answering_vms == set(HOSTS), f"answers came from {sorted(answering_vms)}"


def test_an_order_crosses_the_vms_and_is_in_postgresql():
    """The gateway (first VM) hands it to an order instance (another VM), which writes it to PostgreSQL
    (last VM); read back through the gateway, and in the database on the VM that runs it."""
    postgres = VMS[host_of(instance("postgres"))]
    assert postgres is not GATEWAY_VM
    order = order_and_read_back(GATEWAY_VM.http)
    row = postgres.check(
        f"runuser -u postgres -- psql -h {SOCKET_DIR} -p {instance('postgres')['port']} -d {DB} -tAX -c "
        f"'SELECT total_cents FROM orders WHERE id = {int(order['id'])}'"
    )
    assert row.strip() == str(order["total_cents"])


def test_this_machine_reaches_the_published_gateway_over_the_lab_vm_network():
    assert_routed_to_a_lab_vm(GATEWAY_VM.address)
    with urllib.request.urlopen(f"http://{GATEWAY_VM.address}:{PUBLISHED_PORT}/health", timeout=15) as answer:
        assert answer.status == 200
