"""JSON logging to stdout: one line per request, one line per log record."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import Flask, Response, g, request


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, instance_id: str):
        super().__init__()
        self.service = service
        self.instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(service: str, instance_id: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The request line below replaces werkzeug's and gunicorn's access logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


access_log = logging.getLogger("shoplab.access")


def log_request(method: str, path: str, status: int, started: float, **fields) -> None:
    access_log.info(
        "request",
        extra={
            "fields": {
                "method": method,
                "path": path,
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
                **fields,
            }
        },
    )


def install_request_logging(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        started = g.get("started", time.perf_counter())
        extra = {}
        cache = response.headers.get("X-Cache")
        if cache:
            extra["cache"] = cache
        log_request(request.method, request.path, response.status_code, started, **extra)
        return response
