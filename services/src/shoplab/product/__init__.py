"""Product service: the catalogue in PostgreSQL, read through a Redis cache (cache-aside)."""

from __future__ import annotations

from flask import Flask

from shoplab.core.config import Config
from shoplab.core.data_service import create_data_service_app
from shoplab.product.repository import ProductRepository
from shoplab.product.routes import bp


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("product")
    # Redis down is "degraded": reads still work from PostgreSQL, so it does not fail readiness.
    app = create_data_service_app(
        config, bp, operator_guards="catalogue writes", seed=True, report_redis=True
    )
    app.extensions["shoplab.products"] = ProductRepository(app.extensions["shoplab.db"])
    return app
