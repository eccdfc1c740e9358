"""Helpers and settings shared by the test modules."""

from __future__ import annotations

import requests

# Short intervals so expiry and re-registration are observable within seconds.
HEARTBEAT_INTERVAL = "1"
FAST_ENV = {"HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL, "GATEWAY_LOOKUP_TTL": "0.3", "LOG_LEVEL": "INFO"}


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    return body
