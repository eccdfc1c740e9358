"""The part of the product and order factories that is the same: the services that keep data.

Both keep their data in PostgreSQL (schema created on first use), touch the catalogue's Redis cache,
guard a part of their API with the operator token, and answer API requests only once the schema exists.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from shoplab.core.app import create_base_app
from shoplab.core.auth import BearerToken
from shoplab.core.cache import ProductCache
from shoplab.core.config import Config
from shoplab.core.db import Database, register_database_errors
from shoplab.core.schema import SchemaGuard, require_schema


def create_data_service_app(
    config: Config, blueprint: Blueprint, *, operator_guards: str, seed: bool, report_redis: bool
) -> Flask:
    """The base app with the service's routes, `shoplab.db`, `shoplab.cache` and `shoplab.operator` in
    app.extensions, database errors as 503 problems, and the schema ensured (eagerly when the database
    is up; later requests retry if it is not).

    `operator_guards`: what the operator token guards (named when it is missing); `seed`: fill an empty
    catalogue; `report_redis`: /ready also reports Redis, as optional (down is degraded, not unready).
    """
    operator = BearerToken(config.operator_token, "SHOPLAB_OPERATOR_TOKEN", operator_guards)
    db = Database(
        config.database_url,
        config.db_pool_max,
        statement_timeout=config.db_statement_timeout,
        lock_timeout=config.db_lock_timeout,
    )
    cache = ProductCache(config.redis_url, config.cache_ttl, config.redis_timeout)
    schema = SchemaGuard(db, seed=seed)

    def ready() -> dict[str, bool]:
        checks = {"postgres": db.ping() and schema.ensure()}
        if report_redis:
            checks["~redis"] = cache.ping()
        return checks

    app = create_base_app(config, ready_check=ready)
    app.extensions.update({"shoplab.db": db, "shoplab.cache": cache, "shoplab.operator": operator})
    register_database_errors(app)
    app.register_blueprint(blueprint)

    require_schema(app, schema)

    schema.ensure()
    return app
