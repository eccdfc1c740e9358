"""RFC 9457 problem details: the one place that builds every error response of every service."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, has_request_context, request
from werkzeug.exceptions import HTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"

log = logging.getLogger("shoplab.problems")


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem; `extra` lands as extension members."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        title: str | None = None,
        headers: dict | None = None,
        **extra: Any,
    ):
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = headers
        self.extra = extra


def problem_body(status: int, detail: str | None = None, title: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def problem(
    status: int,
    detail: str | None = None,
    title: str | None = None,
    headers: dict | None = None,
    **extra: Any,
) -> Response:
    if "instance" not in extra and has_request_context():
        extra["instance"] = request.path
    response = Response(problem_body(status, detail, title, **extra), status=status)
    response.content_type = PROBLEM_CONTENT_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ProblemError)
    def _problem_error(error: ProblemError) -> Response:
        return problem(error.status, error.detail, error.title, error.headers, **error.extra)

    @app.errorhandler(HTTPException)
    def _http_exception(error: HTTPException) -> Response:
        if error.code == 413:
            drain_body(request.environ)
        headers = {}
        if error.code == 405 and error.response is None:
            allowed = getattr(error, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return problem(error.code or 500, error.description, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "An unexpected error occurred.")


# Past the limit we still read (and drop) this much of an oversized body before answering 413: a
# server that answers early and closes leaves the client's keep-alive connection broken.
DRAIN_LIMIT = 1024 * 1024


def drain_body(environ: dict) -> None:
    try:
        remaining = min(int(environ.get("CONTENT_LENGTH") or 0), DRAIN_LIMIT)
    except ValueError:
        return
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            return
        remaining -= len(chunk)
