"""What the product and order factories share (shoplab.core.data_service): the operator token they
need to start, and what their /ready reports."""

from __future__ import annotations

import importlib

import pytest
import requests
from shoplab.core.config import Config
from shoplab.devtools.servers import LOOPBACK


@pytest.mark.parametrize(
    ("service", "guards"), [("product", "catalogue writes"), ("order", "the order list")]
)
def test_a_service_that_keeps_data_refuses_to_start_without_the_operator_token(monkeypatch, service, guards):
    create_app = importlib.import_module(f"shoplab.{service}").create_app
    for name in ("SHOPLAB_OPERATOR_TOKEN", "SHOPLAB_OPERATOR_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=f"SHOPLAB_OPERATOR_TOKEN .*: {guards} need it"):
        create_app(Config.from_env(service))


def test_product_reports_redis_as_optional_and_order_reports_postgres_alone(stack):
    """/ready of an instance itself: the product service reads through Redis (down is degraded, so it
    is reported, not required); the order service only invalidates the cache and does not report it."""
    product = requests.get(f"http://{LOOPBACK}:{stack.products[0].port}/ready", timeout=10)
    order = requests.get(f"http://{LOOPBACK}:{stack.orders[0].port}/ready", timeout=10)
    assert (product.status_code, product.json()["checks"]) == (200, {"postgres": "ok", "redis": "ok"})
    assert (order.status_code, order.json()["checks"]) == (200, {"postgres": "ok"})
