"""Shoplab's e-commerce microservices: one package, one module per service, a small shared core."""

__version__ = "0.1.0"

SERVICES = ("registry", "product", "order", "gateway")
# The package's one copy of the lab's ports, for when the environment names none: a service started by
# hand, `make run-local`, `shoplab-probe <service>`. On a lab host every deploy sets PORT,
# SERVICE_REGISTRY, REDIS_URL and DATABASE_URL from group_vars/all/topology.yml, the source of truth;
# tests/test_topology.py checks that these are its ports.
DEFAULT_PORTS = {"gateway": 3000, "registry": 5000, "product": 5001, "order": 5002}
DATASTORE_PORTS = {"redis": 6379, "postgres": 5432}
