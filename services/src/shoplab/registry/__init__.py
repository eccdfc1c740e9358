"""Service registry: register, heartbeat, deregister, look up healthy instances (state in memory)."""

from __future__ import annotations

from flask import Flask

from shoplab.core.app import create_base_app
from shoplab.core.auth import BearerToken
from shoplab.core.config import Config
from shoplab.registry.routes import bp
from shoplab.registry.store import RegistryStore


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("registry")
    token = BearerToken(config.registry_token, "SHOPLAB_REGISTRY_TOKEN", "registry writes")
    app = create_base_app(config, ready_check=lambda: {})
    app.extensions["shoplab.registry"] = RegistryStore(ttl=config.registry_ttl)
    app.extensions["shoplab.registry_token"] = token
    app.register_blueprint(bp)
    return app
