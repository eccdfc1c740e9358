"""API gateway: the only public entry. Routes /api/products… and /api/orders… to registered instances."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from shoplab.core.app import create_base_app
from shoplab.core.config import DEFAULT_REGISTRY_URL, Config
from shoplab.core.registry_client import RegistryClient
from shoplab.gateway.balancer import Balancer
from shoplab.gateway.proxy import ROUTES, Proxy


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("gateway")
    registry = RegistryClient(config.service_registry or DEFAULT_REGISTRY_URL, timeout=1.0)
    balancer = Balancer(
        registry,
        config.gateway_lookup_ttl,
        config.gateway_eject_after,
        config.gateway_eject_seconds,
        config.gateway_allowed_networks,
    )
    app = create_base_app(config, ready_check=lambda: {"registry": registry.health()})

    @app.get("/")
    def index() -> Response:
        return jsonify(service="shoplab-gateway", routes=sorted(ROUTES))

    # The proxy sits in front of Flask (Flask's documented middleware pattern): API traffic skips routing.
    app.wsgi_app = Proxy(app.wsgi_app, config, balancer)
    return app
