"""Product service: the catalogue in PostgreSQL, read through a Redis cache (cache-aside)."""

from __future__ import annotations

from flask import Flask

from shoplab.core.app import create_base_app
from shoplab.core.auth import BearerToken
from shoplab.core.cache import ProductCache
from shoplab.core.config import Config
from shoplab.core.db import Database, register_database_errors
from shoplab.core.schema import SchemaGuard, require_schema
from shoplab.product.fastpath import CachedReads
from shoplab.product.repository import ProductRepository
from shoplab.product.routes import bp


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("product")
    operator = BearerToken(config.operator_token, "SHOPLAB_OPERATOR_TOKEN", "catalogue writes")
    db = Database(
        config.database_url,
        config.db_pool_max,
        statement_timeout=config.db_statement_timeout,
        lock_timeout=config.db_lock_timeout,
    )
    cache = ProductCache(config.redis_url, config.cache_ttl, config.redis_timeout)
    schema = SchemaGuard(db, seed=True)

    def ready() -> dict[str, bool]:
        # Redis down is "degraded": reads still work from PostgreSQL, so it does not fail readiness.
        return {"postgres": db.ping() and schema.ensure(), "~redis": cache.ping()}

    app = create_base_app(config, ready_check=ready)
    app.extensions["shoplab.db"] = db
    app.extensions["shoplab.cache"] = cache
    app.extensions["shoplab.products"] = ProductRepository(db)
    app.extensions["shoplab.operator"] = operator
    register_database_errors(app)
    app.register_blueprint(bp)

    require_schema(app, schema)

    # Cache hits are answered in front of Flask (misses and everything else go through it).
    app.wsgi_app = CachedReads(app.wsgi_app, cache)
    schema.ensure()  # eagerly when the database is up; later requests retry if it is not
    return app
