"""The registry's HTTP API (internal: only the backend tier and the gateway talk to it)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify

from shoplab.core.problems import ProblemError
from shoplab.core.validation import integer_field, json_object_body, reject_unknown_fields, string_field

bp = Blueprint("registry", __name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def store():
    return current_app.extensions["shoplab.registry"]


def checked_name(value: str, what: str) -> str:
    if not NAME.match(value):
        raise ProblemError(404, f"No {what} named '{value}'.")
    return value


@bp.post("/services/<service>/instances")
def register(service: str) -> tuple[Response, int]:
    checked_name(service, "service")
    body = json_object_body()
    reject_unknown_fields(body, {"instance_id", "address", "port"})
    instance_id = string_field(body, "instance_id", max_length=100)
    if not NAME.match(instance_id):
        raise ProblemError(422, "'instance_id' may hold letters, digits, '.', '_' and '-'.")
    address = string_field(body, "address", max_length=253)
    port = integer_field(body, "port", minimum=1, maximum=65535)
    created = store().register(service, instance_id, address, port)
    status = 201 if created else 200
    return jsonify(service=service, instance_id=instance_id, address=address, port=port), status


@bp.put("/services/<service>/instances/<instance_id>/heartbeat")
def heartbeat(service: str, instance_id: str) -> Response:
    if not store().heartbeat(checked_name(service, "service"), checked_name(instance_id, "instance")):
        # The client reacts to this 404 by registering again (e.g. after a registry restart).
        raise ProblemError(404, f"Instance '{instance_id}' of '{service}' is not registered.")
    return jsonify(service=service, instance_id=instance_id, status="alive")


@bp.delete("/services/<service>/instances/<instance_id>")
def deregister(service: str, instance_id: str) -> tuple[str, int]:
    if not store().deregister(checked_name(service, "service"), checked_name(instance_id, "instance")):
        raise ProblemError(404, f"Instance '{instance_id}' of '{service}' is not registered.")
    return "", 204


@bp.get("/services/<service>/instances")
def lookup(service: str) -> Response:
    checked_name(service, "service")
    return jsonify(service=service, instances=store().healthy(service))


@bp.get("/services")
def everything() -> Response:
    return jsonify(services=store().all_services())
