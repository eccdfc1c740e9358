"""One real system for the whole session: Redis, PostgreSQL, a registry, two product and two order
instances and a gateway, all on loopback ports, started with shoplab.devtools (as `make run-local` does).

Tests that break things (kill an instance, stop Redis, restart the registry) start their own extra
processes through `servers`, so the shared system stays healthy for the other tests.
"""

from __future__ import annotations

import itertools
import os
import uuid

import pytest
import requests
from helpers import FAST_ENV, OPERATOR
from shoplab.devtools.servers import Servers
from shoplab.devtools.stack import Stack, start_stack
from shoplab.server.eventloop import EventLoop


@pytest.fixture(scope="session")
def stack() -> Stack:
    stack = start_stack(products=2, orders=2, workers=1, **FAST_ENV)
    yield stack
    stack.servers.stop()


@pytest.fixture
def servers() -> Servers:
    """A scratch area for processes a single test starts (and may kill); stopped after the test."""
    scratch = Servers()
    yield scratch
    scratch.stop()


@pytest.fixture
def loop() -> EventLoop:
    """An event loop woken through a pipe of its own, as a worker's is through gunicorn's."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    loop = EventLoop(read, write)
    yield loop
    loop.close()
    os.close(read)
    os.close(write)


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> str:
    return stack.gateway_url


@pytest.fixture
def http() -> requests.Session:
    with requests.Session() as session:
        yield session


@pytest.fixture
def operator() -> requests.Session:
    """A client holding the operator's token: catalogue writes and the order list."""
    with requests.Session() as session:
        session.headers.update(OPERATOR)
        yield session


_sku_numbers = itertools.count(1)


@pytest.fixture
def new_product(gateway: str, operator: requests.Session):
    """Create a fresh product (so tests never share stock) and return its JSON."""

    def create(stock: int = 100, price_cents: int = 1000) -> dict:
        sku = f"T-{uuid.uuid4().hex[:8]}-{next(_sku_numbers)}"
        response = operator.post(
            f"{gateway}/api/products",
            json={"sku": sku, "name": f"Test product {sku}", "price_cents": price_cents, "stock": stock},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    return create
