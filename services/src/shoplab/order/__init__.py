"""Order service: places orders against the catalogue's stock in one transaction, idempotently."""

from __future__ import annotations

from flask import Flask

from shoplab.core.config import Config
from shoplab.core.data_service import create_data_service_app
from shoplab.order.routes import bp


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env("order")
    # The cache is only used to invalidate product entries when an order changes stock.
    return create_data_service_app(
        config, bp, operator_guards="the order list", seed=False, report_redis=False
    )
