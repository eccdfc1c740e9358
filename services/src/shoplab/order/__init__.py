"""Order service: places orders against the catalogue's stock in one transaction, idempotently."""

from __future__ import annotations

from flask import Flask

from shoplab.core.app import create_base_app
from shoplab.core.auth import BearerToken
from shoplab.core.cache import ProductCache
from shoplab.core.config import Config
from shoplab.core.db import Database, register_database_errors
from shoplab.core.schema import SchemaGuard, require_schema
from shoplab.order.routes import bp


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("order")
    operator = BearerToken(config.operator_token, "SHOPLAB_OPERATOR_TOKEN", "the order list")
    db = Database(
        config.database_url,
        config.db_pool_max,
        statement_timeout=config.db_statement_timeout,
        lock_timeout=config.db_lock_timeout,
    )
    # Only used to invalidate product entries when an order changes stock.
    cache = ProductCache(config.redis_url, config.cache_ttl, config.redis_timeout)
    schema = SchemaGuard(db, seed=False)

    app = create_base_app(config, ready_check=lambda: {"postgres": db.ping() and schema.ensure()})
    app.extensions.update({"shoplab.db": db, "shoplab.cache": cache, "shoplab.operator": operator})
    register_database_errors(app)
    app.register_blueprint(bp)

    require_schema(app, schema)

    schema.ensure()
    return app
