"""Property-based fuzzing of every public endpoint: schemathesis from openapi.yaml, plus raw hypothesis
bodies. The property: never a 5xx, and every response conforms to the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import requests
import schemathesis
from helpers import OPERATOR, REGISTRY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance
from shoplab.core.validation import MAX_DEPTH

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)

FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a failure reproduces
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_endpoint_conforms_and_never_5xx(case, gateway):
    response = case.call(base_url=gateway, headers=operator_unless_negative_headers(case), timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
    # A schema-valid request may still break a business rule (unknown product id, not enough stock,
    # duplicate SKU): those are documented 4xx answers, not failures.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def operator_unless_negative_headers(case) -> dict[str, str]:
    """As the operator, so the fuzzing reaches past the token check (test_auth.py covers the refusals);
    not when the case's headers are wrong on purpose: the missing token may be what is wrong."""
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    return {} if headers is not None and headers.mode.is_negative else OPERATOR


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
order_like = st.fixed_dictionaries(
    {
        "items": st.lists(
            st.dictionaries(st.sampled_from(["product_id", "quantity", "x"]), json_values), max_size=3
        )
    }
)
WRITES = [("POST", "/api/orders"), ("POST", "/api/products"), ("PATCH", "/api/products/1")]


@given(
    target=st.sampled_from(WRITES),
    body=json_values | order_like,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
@FUZZ_SETTINGS
def test_arbitrary_json_bodies_never_5xx(gateway, target, body, content_type):
    method, path = target
    data = json.dumps(body)
    headers = {"Content-Type": content_type, **OPERATOR}
    response = requests.request(method, f"{gateway}{path}", data=data, headers=headers, timeout=30)
    assert response.status_code < 500, (method, path, data, response.status_code, response.text)


@given(target=st.sampled_from(WRITES), raw=st.binary(max_size=300))
@FUZZ_SETTINGS
def test_arbitrary_bytes_never_5xx(gateway, target, raw):
    method, path = target
    response = requests.request(
        method, f"{gateway}{path}", data=raw, headers={"Content-Type": "application/json", **OPERATOR}
    )
    assert 400 <= response.status_code < 500, (method, path, raw, response.status_code, response.text)


@given(path=st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30))
@FUZZ_SETTINGS
def test_arbitrary_paths_never_5xx(gateway, path):
    for prefix in ("/api/products/", "/api/orders/", "/"):
        response = requests.get(f"{gateway}{prefix}{path}", timeout=30)
        assert response.status_code < 500, (prefix + path, response.status_code, response.text)


# Arrays and objects nested deeper than any body of ours, up to far past the interpreter's recursion limit
# (json.loads recursed once per level: "[" * 5000 was a 500), whole or cut off, with something inside.
opening = st.sampled_from(["[", '{"items":', '{"a":[', '[{"b":'])
deep_json = st.builds(
    lambda unit, depth, inner, closed: unit * depth + inner + ("" if not closed else _closing(unit) * depth),
    opening,
    st.integers(min_value=MAX_DEPTH + 1, max_value=6000),
    st.sampled_from(["1", '"x"', "null", "[]", ""]),
    st.booleans(),
)


def _closing(unit: str) -> str:
    return "".join({"[": "]", "{": "}"}[c] for c in reversed(unit) if c in "[{")


@given(body=deep_json, target=st.sampled_from([*WRITES, ("POST", "/services/product/instances")]))
@FUZZ_SETTINGS
def test_deeply_nested_bodies_are_a_400_problem_everywhere(stack, body, target):
    method, path = target
    base, token = (
        (stack.registry_url, REGISTRY) if path.startswith("/services/") else (stack.gateway_url, OPERATOR)
    )
    response = requests.request(
        method, f"{base}{path}", data=body, headers={"Content-Type": "application/json", **token}, timeout=30
    )
    assert response.status_code == 400, (method, path, body[:40], response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "nests" in response.json()["detail"]
