"""Fixtures for the netns scenario's tests (the data and helpers are in labdata.py)."""

from __future__ import annotations

import pytest
from labdata import Lab


@pytest.fixture(scope="module")
def lab(host):
    return Lab(host)
