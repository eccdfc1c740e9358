"""The topology data and the filters that derive instances and the flow matrix from it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import shoplab_topology as topo

ROOT = Path(__file__).resolve().parent.parent
DATA = topo.load_topology()

SERVICES, TIERS, FLOWS = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_allowed_flows"]


def instances(products=2, orders=2):
    counts = {"product_instances": products, "order_instances": orders}
    return topo.shoplab_instances(SERVICES, TIERS, counts)


@pytest.mark.parametrize(("products", "orders"), [(1, 1), (2, 2), (3, 1), (19, 19)])
def test_instances_have_unique_names_and_addresses_inside_their_tier(products, orders):
    found = instances(products, orders)
    assert len(found) == 4 + products + orders
    assert len({i["name"] for i in found}) == len(found)
    assert len({i["address"] for i in found}) == len(found)
    for inst in found:
        subnet = ipaddress.ip_network(TIERS[inst["tier"]]["subnet"])
        assert ipaddress.ip_address(inst["address"]) in subnet
        assert inst["address"] != TIERS[inst["tier"]]["host_address"]
        # Linux interface names are at most 15 characters.
        assert len(inst["veth_host"]) <= 15


def test_scalable_services_are_numbered_even_when_single():
    names = [i["name"] for i in instances(1, 1)]
    assert "product-1" in names
    assert "order-1" in names
    assert "gateway" in names


def test_netns_and_docker_subnets_do_not_overlap():
    nets = [ipaddress.ip_network(t["subnet"]) for t in TIERS.values()]
    nets += [ipaddress.ip_network(t["docker_subnet"]) for t in TIERS.values()]
    nets.append(ipaddress.ip_network(DATA["shoplab_flat_network"]["docker_subnet"]))
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), f"{a} overlaps {b}"


def test_flows_name_known_services():
    for flow in FLOWS:
        assert flow["from"] in [*SERVICES, "host"]
        assert flow["to"] in SERVICES


def cell(matrix, source, target):
    (found,) = [c for c in matrix if c["source"] == source and c["target"] == target]
    return found["allowed"]


def test_matrix_follows_the_flows_alone():
    inst = instances()
    matrix = topo.shoplab_flow_matrix(inst, SERVICES, FLOWS)
    assert len(matrix) == (len(inst) + 1) * len(inst) - len(inst)
    assert cell(matrix, "host", "gateway")
    assert not cell(matrix, "host", "postgres")
    assert not cell(matrix, "host", "product-1")
    assert cell(matrix, "gateway", "product-2")
    assert not cell(matrix, "gateway", "postgres")
    assert not cell(matrix, "gateway", "redis")
    assert cell(matrix, "order-1", "postgres")
    assert not cell(matrix, "registry", "postgres")
    assert not cell(matrix, "redis", "product-1")
    assert not cell(matrix, "postgres", "gateway")
    # Inside a tier only the listed flows: one bridge is not one open segment.
    assert cell(matrix, "product-1", "registry")
    assert not cell(matrix, "product-1", "order-2")
    assert not cell(matrix, "registry", "product-1")
    assert not cell(matrix, "redis", "postgres")


def test_docker_networks_follow_the_flows():
    networks = topo.shoplab_docker_networks(SERVICES, FLOWS)
    assert networks["gateway"] == ["backend", "frontend"]
    assert networks["redis"] == ["database"]
    assert networks["product"] == ["backend", "database"]


def docker_instances(products=2, orders=2, guest_offset=DATA["shoplab_docker_guest_offset"]):
    return topo.shoplab_docker_instances(instances(products, orders), SERVICES, TIERS, FLOWS, guest_offset)


def test_docker_addresses_are_fixed_per_instance_and_the_netns_offsets_at_home():
    found = {i["name"]: i for i in docker_instances(3, 2)}
    for inst in instances(3, 2):
        docker = found[inst["name"]]
        home = docker["docker_addresses"][inst["tier"]]
        # Same last octet as in netns mode, on the tier's docker subnet.
        assert home.rsplit(".", 1)[1] == inst["address"].rsplit(".", 1)[1]
        assert ipaddress.ip_address(home) in ipaddress.ip_network(TIERS[inst["tier"]]["docker_subnet"])
    assert found["product-3"]["compose_service"] == f"{SERVICES['product']['compose_service']}-3"
    assert found["product-3"]["container_suffix"] == f"{SERVICES['product']['compose_service']}-3"
    assert found["gateway"]["compose_service"] == SERVICES["gateway"]["compose_service"]
    assert found["gateway"]["container_suffix"] == f"{SERVICES['gateway']['compose_service']}-1"
    every = [a for i in found.values() for a in i["docker_addresses"].values()]
    assert len(every) == len(set(every))
    assert set(found["gateway"]["docker_addresses"]) == {"frontend", "backend"}


def test_docker_addresses_refuse_a_collision_and_a_count_past_the_subnet():
    services = {**SERVICES, "registry": {**SERVICES["registry"], "host_offset": 20}}
    with pytest.raises(ValueError, match="product-1 and registry would share 172"):
        topo.shoplab_docker_instances(instances(2, 2), services, TIERS, FLOWS, 100)
    with pytest.raises(ValueError, match=r"no address 3[0-9]{2} in"):
        docker_instances(guest_offset=300)


@pytest.mark.parametrize(("products", "orders"), [(1, 1), (19, 19)])
def test_docker_addresses_fit_every_count_the_netns_addresses_fit(products, orders):
    assert len(docker_instances(products, orders)) == 4 + products + orders


def test_docs_are_rendered_from_the_data():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/render_topology_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_cpu_scheduling_is_a_known_policy_and_reaches_every_instance():
    policies = {name: svc.get("cpu_scheduling", "other") for name, svc in SERVICES.items()}
    assert set(policies.values()) <= {"other", "batch"}
    # The gateway is the one every request wakes first; what a request wakes behind it must not preempt it.
    behind = {flow["to"] for flow in FLOWS if flow["from"] == "gateway"} - {"registry"}
    behind |= {flow["to"] for flow in FLOWS if flow["from"] in behind}
    assert policies["gateway"] == "other"
    assert behind and {policies[name] for name in behind - {"registry"}} == {"batch"}
    instances = topo.shoplab_instances(SERVICES, TIERS, {"product_instances": 3, "order_instances": 2})
    assert all(i["cpu_scheduling"] == policies[i["service"]] for i in instances)


def test_the_lab_hosts_published_port_is_the_topologys_and_typed_nowhere_else():
    """shoplab_labhost_published_port: the labhost role publishes it, lab_target and the netns Molecule
    scenario (its host_vars) give it to the firewall's DNAT; none of them types the number."""
    port = DATA["shoplab_labhost_published_port"]
    assert isinstance(port, int) and 1 <= port <= 65535
    # docker mode publishes the gateway's own port: both modes can run on one machine.
    assert port != SERVICES["gateway"]["port"]
    users = [
        "roles/labhost/defaults/main.yml",
        "roles/lab_target/defaults/main.yml",
        "molecule/default/host_vars/shoplab-netns.yml",
    ]
    for path in users:
        assert "shoplab_labhost_published_port" in (ROOT / path).read_text(), path
    others = [
        "roles/labhost/meta/argument_specs.yml",
        "roles/lab_target/meta/argument_specs.yml",
        "molecule/default/molecule.yml",
        *(str(p.relative_to(ROOT)) for p in (ROOT / "molecule").rglob("*.py")),
    ]
    for path in users + others:
        assert str(port) not in (ROOT / path).read_text(), f"{path} types {port}: use the topology's"


def test_the_services_defaults_are_the_topologys_names_and_ports(monkeypatch):
    """The services package cannot read topology.yml on a lab host (the deploy sets the environment
    from it); its one copy of the ports, for when nothing is set, must be the topology's."""
    import shoplab
    from shoplab.core.config import Config

    ports = {name: service["port"] for name, service in SERVICES.items()}
    assert ports == {**shoplab.DEFAULT_PORTS, **shoplab.DATASTORE_PORTS}
    assert set(shoplab.DEFAULT_PORTS) == {n for n, s in SERVICES.items() if s["kind"] == "app"}
    for name in ("SERVICE_REGISTRY", "REDIS_URL", "DATABASE_URL", "DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    config = Config.from_env("product")
    registry, redis, postgres = (SERVICES[n] for n in ("registry", "redis", "postgres"))
    assert config.service_registry == f"http://{registry['hostname']}:{registry['port']}"
    assert config.redis_url == f"redis://{redis['hostname']}:{redis['port']}/0"
    db, user = DATA["shoplab_db_name"], DATA["shoplab_db_user"]
    assert config.database_url == f"postgresql://{user}@{postgres['hostname']}:{postgres['port']}/{db}"


def pool_total(products, orders, data=DATA):
    counts = {"product_instances": products, "order_instances": orders}
    return topo.shoplab_db_pool_total(
        data["shoplab_services"],
        data["shoplab_allowed_flows"],
        counts,
        data["shoplab_web_concurrency"],
        data["shoplab_db_pool_max"],
    )


def test_db_pool_total_counts_every_worker_of_every_postgres_client():
    workers, pool = DATA["shoplab_web_concurrency"], DATA["shoplab_db_pool_max"]
    # product and order reach PostgreSQL; the gateway and the registry do not.
    assert {f["from"] for f in FLOWS if f["to"] == "postgres"} == {"product", "order"}
    assert pool_total(2, 2) == 4 * workers * pool
    assert pool_total(5, 1) == 6 * workers * pool
    # Counts arrive from -e as strings.
    assert (
        topo.shoplab_db_pool_total(
            SERVICES, FLOWS, {"product_instances": "3", "order_instances": "1"}, "2", "10"
        )
        == 80
    )
    # A datastore nobody reaches needs no connection.
    assert (
        topo.shoplab_db_pool_total(
            SERVICES, FLOWS, {"product_instances": 3, "order_instances": 1}, 2, 10, datastore="gateway"
        )
        == 0
    )


def test_default_counts_fit_in_max_connections_and_a_large_count_does_not():
    budget = (
        DATA["shoplab_postgres_max_connections"] - DATA["shoplab_postgres_superuser_reserved_connections"]
    )
    assert pool_total(DATA["product_instances"], DATA["order_instances"]) <= budget
    # What the Molecule scale tests ask for to see the refusal.
    assert pool_total(50, DATA["order_instances"]) > budget


def test_connection_numbers_are_the_topologys_and_typed_nowhere_else():
    """max_connections, the reserve, the workers and the pool size reach PostgreSQL and the services from
    topology.yml, where playbooks/preflight.yml checks them together."""
    from shoplab.core.config import Config

    # The services' own default (no DB_POOL_MAX set) is the topology's.
    assert Config.from_env("gateway").db_pool_max == DATA["shoplab_db_pool_max"]
    users = {
        "roles/netns_datastores/defaults/main.yml": [
            "shoplab_postgres_max_connections",
            "shoplab_postgres_superuser_reserved_connections",
        ],
        "roles/docker_stack/defaults/main.yml": [
            "shoplab_postgres_max_connections",
            "shoplab_postgres_superuser_reserved_connections",
            "shoplab_db_pool_max",
            "shoplab_web_concurrency",
        ],
        "roles/netns_services/defaults/main.yml": ["shoplab_db_pool_max", "shoplab_web_concurrency"],
    }
    for path, names in users.items():
        text = (ROOT / path).read_text()
        for name in names:
            assert name in text, (path, name)
    conf = (ROOT / "roles/netns_datastores/templates/etc/shoplab/postgresql/postgresql.conf.j2").read_text()
    assert "max_connections = {{ netns_datastores_max_connections }}" in conf
