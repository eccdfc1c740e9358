"""JSON logging: one access line per request on stdout, every other log record on stderr.

Two streams, as in nginx's image (access log to stdout, error log to stderr): whoever runs the service
can keep them apart. The netns units append the access lines to a file and send the rest to the journal;
Docker keeps both in the container's log.

Access lines are buffered like nginx's `access_log … buffer=64k flush=1s`: formatting a record through
the logging module and writing it under the handler's lock cost a fifth of the gateway's CPU per request
(py-spy), more than routing it. They are appended to an in-memory buffer and written in one write when
it fills, every `flush_seconds`, and when the worker exits. Warnings and errors still go straight out.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _json_str
from typing import TextIO

from flask import Flask, Response, g, request

ACCESS_LOGGER = "shoplab.access"


def _json_value(value: object) -> str:
    if type(value) is str:
        return _json_str(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value, default=str)


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


class AccessLog:
    """Buffered access lines, in the same JSON shape as every other log line."""

    BUFFER_BYTES = 64 * 1024

    def __init__(
        self, service: str, instance_id: str, stream: TextIO, flush_seconds: float, enabled: bool = True
    ):
        self.service = service
        self.instance_id = instance_id
        self.stream = stream
        self.flush_seconds = flush_seconds
        self.enabled = enabled
        self._fixed = (
            f'"level":"info","service":{_json_str(service)},"instance":{_json_str(instance_id)},'
            f'"logger":"{ACCESS_LOGGER}","msg":"request",'
        )
        self._lines: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def record(self, method: str, path: str, status: int, started: float, **fields) -> None:
        if not self.enabled:
            return
        # The line JsonFormatter would write, built as text: the fixed fields are encoded once (in
        # __init__) and the rest one by one, 2.7 µs against 6.6 µs for json.dumps of the whole dict.
        ms = (time.perf_counter() - started) * 1000
        extra = "".join(f",{_json_str(name)}:{_json_value(value)}" for name, value in fields.items())
        text = (
            f'{{"ts":{time.time():.3f},{self._fixed}"method":{_json_str(method)},"path":{_json_str(path)},'
            f'"status":{int(status)},"ms":{ms:.2f}{extra}}}\n'
        )
        if self.flush_seconds <= 0:
            with self._lock:
                self._write(text)
            return
        with self._lock:
            self._lines.append(text)
            self._size += len(text)
            full = self._size >= self.BUFFER_BYTES
        if full:
            self.flush()
        elif self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines, self._size = self._lines, [], 0
            if lines:
                self._write("".join(lines))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout gone (closed at exit, a full disk): drop the lines, never fail requests

    def _start_flusher(self) -> None:
        # Started on first use, so in the worker: a thread started in gunicorn's master dies at the fork.
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_periodically, name="access-log", daemon=True)
        self._flusher.start()

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()


# Replaced by configure_logging(); until then (scripts, tests) each line is written as it comes.
_access_logs = [AccessLog("shoplab", "-", sys.stdout, flush_seconds=0)]


def configure_logging(
    service: str, instance_id: str, level: str, access_log: bool = True, access_log_flush: float = 1.0
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, instance_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The request line below replaces werkzeug's and gunicorn's access logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Access lines are INFO: a level above that turns them off as it does every other info line.
    enabled = access_log and logging.getLevelName(level) <= logging.INFO
    _access_logs[0].flush()
    _access_logs[0] = AccessLog(service, instance_id, sys.stdout, access_log_flush, enabled)


def flush_access_log() -> None:
    _access_logs[0].flush()


atexit.register(flush_access_log)


def log_request(method: str, path: str, status: int, started: float, **fields) -> None:
    _access_logs[0].record(method, path, status, started, **fields)


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
