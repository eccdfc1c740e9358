"""Shoplab's e-commerce microservices: one package, one module per service, a small shared core."""

__version__ = "0.1.0"

SERVICES = ("registry", "product", "order", "gateway")
