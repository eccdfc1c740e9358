"""The registry's HTTP API (internal: only the backend tier and the gateway talk to it).

Writes (register, heartbeat, deregister) need the lab's registry token, and an instance speaks only for
the address it connects from: otherwise anything that reaches the registry could send the shop's order
traffic to a host of its choosing. Look-ups stay open to the tier.
"""

from __future__ import annotations

import ipaddress
import re

from flask import Blueprint, Response, current_app, jsonify, request

from shoplab.core.problems import ProblemError
from shoplab.core.validation import integer_field, json_object_body, reject_unknown_fields, string_field

bp = Blueprint("registry", __name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def store():
    return current_app.extensions["shoplab.registry"]


def authorised() -> None:
    current_app.extensions["shoplab.registry_token"].require()


def own_address(address: str, doing: str) -> str:
    """`address` as the registry keeps it, or a 403 problem unless it is the address this request comes
    from (a name is refused as well: the gateway never resolves one)."""
    source = request.remote_addr or ""
    try:
        if ipaddress.ip_address(address) == ipaddress.ip_address(source):
            return source
    except ValueError:
        pass
    raise ProblemError(
        403,
        f"An instance may {doing} only from its own address: this connection comes from {source}, "
        f"not from {address!r}.",
        source_address=source,
    )


def checked_name(value: str, what: str) -> str:
    if not NAME.match(value):
        raise ProblemError(404, f"No {what} named '{value}'.")
    return value


@bp.post("/services/<service>/instances")
def register(service: str) -> tuple[Response, int]:
    authorised()
    checked_name(service, "service")
    body = json_object_body()
    reject_unknown_fields(body, {"instance_id", "address", "port"})
    instance_id = string_field(body, "instance_id", max_length=100)
    if not NAME.match(instance_id):
        raise ProblemError(422, "'instance_id' may hold letters, digits, '.', '_' and '-'.")
    address = string_field(body, "address", max_length=253)
    port = integer_field(body, "port", minimum=1, maximum=65535)
    address = own_address(address, "register")
    created, holder = store().register(service, instance_id, address, port)
    if holder is not None:
        raise ProblemError(
            409,
            f"Instance '{instance_id}' of '{service}' is registered at another address "
            f"({holder.address}:{holder.port}) until it stops heartbeating and expires.",
        )
    status = 201 if created else 200
    return jsonify(service=service, instance_id=instance_id, address=address, port=port), status


@bp.put("/services/<service>/instances/<instance_id>/heartbeat")
def heartbeat(service: str, instance_id: str) -> Response:
    authorised()
    if not store().heartbeat(
        checked_name(service, "service"), checked_name(instance_id, "instance"), request.remote_addr or ""
    ):
        # The client reacts to this 404 by registering again (e.g. after a registry restart).
        raise ProblemError(404, f"Instance '{instance_id}' of '{service}' is not registered.")
    return jsonify(service=service, instance_id=instance_id, status="alive")


@bp.delete("/services/<service>/instances/<instance_id>")
def deregister(service: str, instance_id: str) -> tuple[str, int]:
    authorised()
    if not store().deregister(
        checked_name(service, "service"), checked_name(instance_id, "instance"), request.remote_addr or ""
    ):
        raise ProblemError(404, f"Instance '{instance_id}' of '{service}' is not registered.")
    return "", 204


@bp.get("/services/<service>/instances")
def lookup(service: str) -> Response:
    checked_name(service, "service")
    found = store().healthy(service)
    age = store().warming_up(service)
    if not found and age:
        # An empty answer now would make the gateway drop instances that are alive and about to
        # re-register; a 503 makes it keep the list it last knew (measured by the registry-killed drill).
        raise ProblemError(
            503,
            f"the registry started {age:.1f} s ago and has not yet heard from every instance of "
            f"{service!r} (they re-register within {store().ttl:g} s): keep the list you last had",
            title="Registry warming up",
        )
    return jsonify(service=service, instances=found)


@bp.get("/services")
def everything() -> Response:
    return jsonify(services=store().all_services())
