"""Strict request validation: every bad input becomes a 4xx problem before anything is written."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from shoplab.core.problems import ProblemError

MAX_INT = 2**31 - 1  # PostgreSQL `integer`; larger values would be a database error, i.e. a 5xx.
# No body of ours nests deeper than 3 ({"items": [{…}]}). json.loads recurses once per level: "[" * 5000
# raised RecursionError (a 500), and a body just below the interpreter's limit still costs a deep stack.
MAX_DEPTH = 16


def json_object_body() -> dict[str, Any]:
    """The request body as a JSON object, or a 413/415/400/422 problem."""
    if request.mimetype != "application/json":
        raise ProblemError(415, "Send the body as Content-Type: application/json.")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if nesting(raw) > MAX_DEPTH:
        raise ProblemError(400, f"The body nests arrays and objects deeper than {MAX_DEPTH} levels.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ProblemError(400, f"The body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ProblemError(422, "The body must be a JSON object.")
    return body


_BRACKETS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"?', re.S)


def nesting(raw: bytes) -> int:
    """How deep the brackets of a JSON text nest (outside strings), without parsing it: checked before
    json.loads, which would recurse that deep. Not a validator: json.loads judges the rest."""
    depth = deepest = 0
    for token in _BRACKETS.findall(raw):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def reject_unknown_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        detail = f"Unknown field(s): {', '.join(unknown)}."
        raise ProblemError(422, detail, errors=_errors(unknown, "unknown"))


def _errors(fields: list[str], message: str) -> list[dict[str, str]]:
    return [{"field": name, "message": message} for name in fields]


def integer_field(
    body: dict[str, Any], name: str, *, minimum: int, maximum: int = MAX_INT, required: bool = True
) -> int | None:
    if name not in body:
        if required:
            raise ProblemError(422, f"'{name}' is required.", errors=_errors([name], "required"))
        return None
    value = body[name]
    # bool is a subclass of int in Python; JSON true is not a quantity.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProblemError(422, f"'{name}' must be an integer.", errors=_errors([name], "must be an integer"))
    if not minimum <= value <= maximum:
        raise ProblemError(
            422,
            f"'{name}' must be between {minimum} and {maximum}.",
            errors=_errors([name], f"must be between {minimum} and {maximum}"),
        )
    return value


def string_field(
    body: dict[str, Any],
    name: str,
    *,
    min_length: int = 1,
    max_length: int = 200,
    required: bool = True,
    pattern: re.Pattern | None = None,
) -> str | None:
    if name not in body:
        if required:
            raise ProblemError(422, f"'{name}' is required.", errors=_errors([name], "required"))
        return None
    value = body[name]
    if not isinstance(value, str):
        raise ProblemError(422, f"'{name}' must be a string.", errors=_errors([name], "must be a string"))
    # PostgreSQL text can hold neither NUL nor lone surrogates; refusing them here keeps them a 422.
    if (
        not min_length <= len(value) <= max_length
        or not value.strip()
        or "\x00" in value
        or not _encodable(value)
        or (pattern is not None and not pattern.fullmatch(value))
    ):
        raise ProblemError(
            422,
            f"'{name}' must be {min_length} to {max_length} characters, not blank"
            + (f", matching {pattern.pattern}" if pattern else "")
            + ".",
            errors=_errors([name], "invalid string"),
        )
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def query_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ProblemError(400, f"Query parameter '{name}' must be a positive integer.")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ProblemError(400, f"Query parameter '{name}' must be between {minimum} and {maximum}.")
    return value


def path_id(raw: str) -> int:
    """IDs in paths are matched as strings so that '/api/products/abc' is a problem, not a routing 404."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or not 1 <= int(raw) <= MAX_INT:
        raise ProblemError(404, f"No resource with id '{raw}'.")
    return int(raw)
