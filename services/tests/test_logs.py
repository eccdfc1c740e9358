"""Access lines: their JSON shape and when the buffer is written out (no server needed)."""

from __future__ import annotations

import io
import json
import logging
import time

from shoplab.core import logs
from shoplab.core.logs import AccessLog, configure_logging, log_request


def make_log(flush_seconds: float, enabled: bool = True) -> tuple[AccessLog, io.StringIO]:
    stream = io.StringIO()
    return AccessLog("gateway", "gateway-1", stream, flush_seconds, enabled), stream


def test_a_line_is_one_json_object_with_the_request_fields():
    log, stream = make_log(flush_seconds=0)
    log.record("GET", "/api/products", 200, time.perf_counter(), upstream="product-1", attempts=1)
    (line,) = stream.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["logger"] == "shoplab.access" and parsed["level"] == "info"
    assert (parsed["service"], parsed["instance"]) == ("gateway", "gateway-1")
    assert (parsed["method"], parsed["path"], parsed["status"]) == ("GET", "/api/products", 200)
    assert (parsed["upstream"], parsed["attempts"]) == ("product-1", 1)


def test_any_path_and_field_value_comes_back_as_it_went_in():
    log, stream = make_log(flush_seconds=0)
    path = '/api/products/"quoted"\\back\tslash/\u00e9\u20ac\U0001f600\x7f\x01'
    fields = {"upstream": None, "attempts": 2, "retried": True, "weight": 0.25, "cache": "HIT"}
    log.record("PATCH", path, 503, time.perf_counter(), **fields)
    parsed = json.loads(stream.getvalue())
    assert parsed["path"] == path and parsed["method"] == "PATCH" and parsed["status"] == 503
    assert {name: parsed[name] for name in fields} == fields
    assert isinstance(parsed["ts"], float) and parsed["ms"] >= 0
    assert stream.getvalue().isascii()  # one line, whatever the path held


def test_lines_wait_in_the_buffer_until_flushed():
    log, stream = make_log(flush_seconds=600)
    for _ in range(5):
        log.record("GET", "/health", 200, time.perf_counter())
    assert stream.getvalue() == ""
    log.flush()
    assert len(stream.getvalue().splitlines()) == 5


def test_a_full_buffer_is_written_at_once():
    log, stream = make_log(flush_seconds=600)
    path = "/api/products/" + "9" * 200
    while not stream.getvalue():
        log.record("GET", path, 404, time.perf_counter())
    assert len(stream.getvalue()) >= AccessLog.BUFFER_BYTES


def test_the_flusher_writes_on_its_interval():
    log, stream = make_log(flush_seconds=0.05)
    log.record("POST", "/api/orders", 201, time.perf_counter())
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(stream.getvalue())["status"] == 201


def test_disabled_writes_nothing():
    log, stream = make_log(flush_seconds=0, enabled=False)
    log.record("GET", "/health", 200, time.perf_counter())
    log.flush()
    assert stream.getvalue() == ""


def test_access_lines_go_to_stdout_and_every_other_record_to_stderr(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._access_logs[0]
    try:
        configure_logging("product", "product-7", "INFO", access_log=True, access_log_flush=0)
        log_request("GET", "/api/products/3", 200, time.perf_counter(), cache="HIT")
        logging.getLogger("shoplab.cache").warning("redis is down")
        out, err = capsys.readouterr()
    finally:
        root.handlers[:], level, logs._access_logs[0] = saved
        root.setLevel(level)
    (access,) = [json.loads(line) for line in out.splitlines()]
    assert (access["logger"], access["path"], access["cache"]) == ("shoplab.access", "/api/products/3", "HIT")
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert (record["level"], record["msg"], record["instance"]) == ("warning", "redis is down", "product-7")
