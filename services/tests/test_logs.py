"""Access lines: their JSON shape and when the buffer is written out (no server needed)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
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


# ACCESS_LOG_FILE: shoplab.core.logs.AccessFile, on real files.


def file_log(path, max_bytes: int = 0, keep: int = 4, flush_seconds: float = 0) -> AccessLog:
    return AccessLog("product", "product-1", logs.AccessFile(str(path), max_bytes, keep), flush_seconds)


def lines_in(*paths) -> list[dict]:
    return [json.loads(line) for path in paths if path.exists() for line in path.read_text().splitlines()]


def test_a_file_gets_the_lines_appended_and_is_readable_by_its_group_only(tmp_path):
    path = tmp_path / "product.access.log"
    path.write_text('{"kept":true}\n')
    log = file_log(path)
    log.record("GET", "/api/products/1", 200, time.perf_counter())
    log.record("GET", "/api/products/2", 200, time.perf_counter())
    assert [line.get("path") for line in lines_in(path)] == [None, "/api/products/1", "/api/products/2"]
    fresh = tmp_path / "fresh.access.log"
    file_log(fresh).record("GET", "/health", 200, time.perf_counter())
    assert fresh.stat().st_mode & 0o777 == 0o640


def test_a_full_file_is_rotated_and_only_keep_generations_stay(tmp_path):
    path = tmp_path / "gateway.access.log"
    log = file_log(path, max_bytes=1000, keep=2)
    for number in range(60):  # ~180 bytes a line: a rotation every 6 lines
        log.record("GET", f"/api/products/{number}", 200, time.perf_counter())
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["gateway.access.log", "gateway.access.log.1", "gateway.access.log.2"]
    for generation in (path, tmp_path / "gateway.access.log.1", tmp_path / "gateway.access.log.2"):
        # Rotated once past the size: no file holds much more than max_bytes plus one write.
        assert 0 < generation.stat().st_size < 1000 + 200
    numbers = [int(line["path"].rsplit("/", 1)[1]) for line in lines_in(
        tmp_path / "gateway.access.log.2", tmp_path / "gateway.access.log.1", path)]  # fmt: skip
    assert numbers == list(range(numbers[0], 60))  # the newest lines, in order, none missing


def test_a_file_renamed_by_someone_else_is_followed_by_the_next_write(tmp_path):
    path = tmp_path / "order.access.log"
    log = file_log(path)
    log.record("POST", "/api/orders", 201, time.perf_counter())
    path.rename(tmp_path / "order.access.log.old")  # logrotate without copytruncate
    log.record("POST", "/api/orders", 409, time.perf_counter())
    assert [line["status"] for line in lines_in(tmp_path / "order.access.log.old")] == [201]
    assert [line["status"] for line in lines_in(path)] == [409]


def _append_lines(path: str, writer: int, count: int) -> None:
    log = AccessLog("product", f"writer-{writer}", logs.AccessFile(path, 16 * 1024, 1000), flush_seconds=600)
    for number in range(count):
        log.record("GET", f"/api/products/{number}", 200, time.perf_counter())
        if number % 50 == 49:
            log.flush()  # 50 lines per write, as the flusher would
    log.flush()


def test_processes_appending_and_rotating_one_file_lose_and_tear_no_line(tmp_path):
    """gunicorn's workers, or a scaled service's containers sharing a folder: one file, many writers."""
    import multiprocessing

    path = tmp_path / "product.access.log"
    writers, count = 4, 2000
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_lines, args=(str(path), n, count)) for n in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    files = sorted(tmp_path.iterdir())
    assert len(files) > 10  # ~1.4 MB through a 16 KiB limit: rotated many times, by several writers
    lines = lines_in(*files)  # json.loads fails on a torn or interleaved line
    seen = sorted((line["instance"], int(line["path"].rsplit("/", 1)[1])) for line in lines)
    assert seen == sorted((f"writer-{n}", number) for n in range(writers) for number in range(count))


def test_lines_that_cannot_be_written_are_dropped_with_one_warning(tmp_path, caplog):
    folder = tmp_path / "logs"
    folder.mkdir()
    log = file_log(folder / "gateway.access.log")
    log.record("GET", "/health", 200, time.perf_counter())
    (folder / "gateway.access.log").unlink()
    folder.rmdir()  # the folder went away: the file can be neither followed nor created
    with caplog.at_level(logging.WARNING, logger="shoplab.access"):
        for _ in range(3):
            log.record("GET", "/health", 200, time.perf_counter())  # never raises into a request
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "access lines dropped" in warnings[0]


def test_a_service_with_an_unusable_access_log_file_does_not_start(monkeypatch, tmp_path):
    from shoplab.core.app import create_base_app
    from shoplab.core.config import Config

    missing = tmp_path / "missing" / "registry.access.log"
    monkeypatch.setenv("ACCESS_LOG_FILE", str(missing))
    saved = logging.getLogger().handlers[:], logs._access_logs[0]
    try:
        with pytest.raises(RuntimeError, match=f"ACCESS_LOG_FILE {missing}: No such file or directory"):
            create_base_app(Config.from_env("registry"), dict)
    finally:
        logging.getLogger().handlers[:], logs._access_logs[0] = saved
