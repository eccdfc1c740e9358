"""Shoplab's e-commerce microservices: one package, one module per service, a small shared core."""

__version__ = "0.1.0"

SERVICES = ("registry", "product", "order", "gateway")
# Each service's port when PORT is not set (the topology data gives the lab's own).
DEFAULT_PORTS = {"gateway": 3000, "registry": 5000, "product": 5001, "order": 5002}
