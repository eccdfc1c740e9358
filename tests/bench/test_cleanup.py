"""The benchmark leaves a lab's data as it found it (bench/shoplab_bench/cleanup.py).

Against the real product and order services on a real PostgreSQL and Redis (loopback, started here):
the run's orders are placed by wrk with bench/lua/post_orders.lua and by the order API, user orders and
another run's orders are placed beside them, and the cleanup is the same psql script the runner sends to
a lab (only the way psql is reached differs: here over TCP on loopback, in a lab through `docker exec`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import requests
from shoplab.devtools.servers import LOOPBACK, Servers, postgres_bindir
from shoplab.order.idempotency import MAX_KEY_LENGTH, checked_key
from shoplab_bench import cleanup, runner, tools
from shoplab_bench.parse import parse_wrk
from shoplab_bench.report import render_markdown
from test_lua_orders import LUA

BENCH = LUA.parent

needs_tools = pytest.mark.skipif(
    not (shutil.which("wrk") and shutil.which("redis-server") and shutil.which("redis-cli")),
    reason="needs wrk, redis-server and redis-cli (apt)",
)


# -- the key prefix ---------------------------------------------------------------------------------


def test_a_key_names_the_run_and_the_case():
    run_id = cleanup.new_run_id(dt.datetime(2026, 11, 30, 23, 59, 1, tzinfo=dt.UTC))
    assert cleanup.RUN_ID.match(run_id)
    assert run_id.startswith("20261130T235901Z-")
    nonce = cleanup.key_nonce(run_id, "0123456789ab")
    assert nonce == f"shoplab-bench-{run_id}-0123456789ab"
    assert cleanup.run_prefix(run_id) == f"shoplab-bench-{run_id}-"
    # post_orders.lua appends -<thread>-<counter>: the longest key it can make is still a valid key.
    longest = f"{nonce}-{2**32}-{10**10 - 1}"
    assert len(longest) <= MAX_KEY_LENGTH
    assert checked_key(longest) == longest
    assert set(longest) <= set(string.ascii_letters + string.digits + "-")


def test_two_runs_never_share_a_prefix():
    now = dt.datetime(2026, 11, 30, 23, 59, 1, tzinfo=dt.UTC)
    ids = {cleanup.new_run_id(now) for _ in range(50)}
    assert len(ids) == 50  # same second, still different
    prefixes = [cleanup.run_prefix(i) for i in ids]
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes)


@pytest.mark.parametrize(
    "bad", ["", "20261130T235901Z", "20261130T235901Z-ABCDEF", "x%", "20261130T235901Z-abcdef_"]
)
def test_a_malformed_run_id_is_refused(bad):
    with pytest.raises(ValueError):
        cleanup.run_prefix(bad)


def test_a_malformed_case_id_is_refused():
    with pytest.raises(ValueError):
        cleanup.key_nonce(cleanup.new_run_id(), "not-hex")


def test_a_restock_without_the_labs_operator_token_is_refused_before_any_write():
    with pytest.raises(RuntimeError, match="operator token"):
        runner.operator_token({"mode": "docker"}, {}, runner.Running())
    failing = {"operator_tokens": {"docker": [sys.executable, "-c", "import sys; sys.exit('no such file')"]}}
    with pytest.raises(RuntimeError, match="no such file"):
        runner.operator_token({"mode": "docker"}, failing, runner.Running())


def test_a_lab_without_a_database_command_takes_no_orders():
    running = runner.Running()
    with pytest.raises(RuntimeError, match="no database command for the netns lab"):
        runner.record_stock([{"mode": "netns"}, {"mode": "floor"}], {}, tools.Load(), running, print)
    assert running.recorded == {}
    # bench_cleanup: false says so and records nothing.
    said = []
    runner.record_stock([{"mode": "netns"}], {"cleanup": False}, tools.Load(), running, said.append)
    assert running.recorded == {}
    assert "cleanup off" in said[0]


def test_the_report_says_what_was_put_back():
    report = {"started": "2026-11-30T23:59:01+00:00", "cases": [], "plan": {"floor": {"enabled": True}},
              "cleanup": {"netns": {"orders": 41234, "order_items": 41234, "idempotency_keys": 41234,
                                    "products_restored": 300, "products_recorded": 300,
                                    "key_prefix": "shoplab-bench-20261130T235901Z-0a1b2c-",
                                    "cache_cleared": True},
                          "docker": {"error": "psql (docker) exited 2: boom",
                                     "key_prefix": "shoplab-bench-20261130T235901Z-0a1b2c-"}}}  # fmt: skip
    md = render_markdown(report)
    assert "## Lab data left behind" in md
    assert (
        "- netns: deleted 41,234 orders, 41,234 order lines and 41,234 idempotency keys (prefix "
        "shoplab-bench-20261130T235901Z-0a1b2c-); stock of 300 of 300 products put back"
    ) in md
    assert "- docker: NOT cleaned up: psql (docker) exited 2: boom" in md


# -- the cleanup against the real services ----------------------------------------------------------


@pytest.fixture(scope="module")
def lab():
    """A one-lab stand-in: Redis, PostgreSQL, one product and one order service on loopback."""
    servers = Servers()
    try:
        servers.start_redis()
        redis_port = servers.processes[-1].port
        database_url = servers.start_postgres()
        token = uuid.uuid4().hex  # the lab's operator token: the restock is a catalogue write
        env = {"SERVICE_REGISTRY": "", "DATABASE_URL": database_url,
               "REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0", "WEB_CONCURRENCY": "1",
               "LOG_LEVEL": "WARNING", "SHOPLAB_OPERATOR_TOKEN": token}  # fmt: skip
        product = servers.start_service("product", "product-1", env)  # creates the schema, seeds 300
        order = servers.start_service("order", "order-1", env)
        pg_port = database_url.rsplit(":", 1)[1].split("/")[0]
        database = {
            "psql": [
                f"{postgres_bindir()}/psql",
                "-h",
                LOOPBACK,
                "-p",
                pg_port,
                "-U",
                "shoplab",
                "-d",
                "shoplab",
            ],
            "cache": ["redis-cli", "-h", LOOPBACK, "-p", str(redis_port), "-n", "0"],
        }
        yield {
            "database_url": database_url,
            "database": database,
            "product_url": f"http://{LOOPBACK}:{product.port}",
            "order_url": f"http://{LOOPBACK}:{order.port}",
            "operator_token": token,
            # How the plan tells the runner to read it (roles/bench: `cat` of the file on the lab host).
            "read_token": [sys.executable, "-c", f"print({token!r})"],
        }
    finally:
        servers.stop()


def rows(database_url: str) -> dict[str, list]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        found = {}
        for table, order in [("products", "id"), ("orders", "id"), ("order_items", "order_id, product_id"),
                             ("idempotency_keys", "key")]:  # fmt: skip
            cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
            found[table] = cur.fetchall()
        return found


def place(order_url: str, items: list[tuple[int, int]], key: str | None = None) -> int:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"items": [{"product_id": p, "quantity": q} for p, q in items]}
    answer = requests.post(f"{order_url}/api/orders", json=body, headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def stock_via_api(product_url: str, product_id: int) -> int:
    return requests.get(f"{product_url}/api/products/{product_id}", timeout=10).json()["stock"]


@needs_tools
def test_the_cleanup_deletes_exactly_the_runs_orders_and_puts_the_stock_back(lab):
    run_id, other_run = cleanup.new_run_id(), cleanup.new_run_id()
    # What a user (and an earlier run that was not cleaned up) left in the lab before the run.
    user_orders = {
        place(lab["order_url"], [(1, 1)], key="my-own-key"),
        place(lab["order_url"], [(2, 2), (3, 1)]),
        place(lab["order_url"], [(4, 1)], key=cleanup.key_nonce(other_run, "0" * 12) + "-1-1"),
        # The run id without the "-" that ends the prefix is another key.
        place(lab["order_url"], [(5, 1)], key=f"shoplab-bench-{run_id}0-1-1"),
        place(lab["order_url"], [(6, 1)], key=f"x-shoplab-bench-{run_id}-{'0' * 12}-1-1"),
    }
    before = rows(lab["database_url"])
    cached_before = stock_via_api(lab["product_url"], 7)  # fills the cache with the stock as found

    target = {"mode": "lab", "name": "lab-direct", "products_url": lab["product_url"], "prefix": []}
    running = runner.Running(run_id)
    said: list[str] = []
    runner.record_stock([target], {"databases": {"lab": lab["database"]}}, tools.Load(), running, said.append)
    assert len(running.recorded["lab"][1]) == 300
    runner.restock(target, 300, 1_000_000, lab["operator_token"])
    # The run: wrk with the runner's nonce, and a multi-line order with one of the run's keys.
    load = tools.Load(threads=2, connections=8, duration_s=2)
    nonce = cleanup.key_nonce(run_id, uuid.uuid4().hex[:12])
    ran = tools.run([], tools.wrk_argv(load, lab["order_url"], "orders", str(LUA), nonce), limit_s=20)
    assert ran.returncode == 0, ran.output
    assert parse_wrk(ran.output)["non_2xx"] == 0
    place(lab["order_url"], [(7, 3), (8, 1), (9, 2)], key=f"{nonce}-9-1")
    assert stock_via_api(lab["product_url"], 7) >= 1_000_000 - 1000  # the bench's stock, now cached
    during = rows(lab["database_url"])
    run_keys = [k for k in during["idempotency_keys"] if k[0].startswith(cleanup.run_prefix(run_id))]
    assert len(run_keys) > 100
    assert len(during["orders"]) == len(before["orders"]) + len(run_keys)

    results = running.put_back(said.append)

    after = rows(lab["database_url"])
    assert after == before  # every row as found: orders, lines, keys, products (stock and updated_at)
    assert {o[0] for o in after["orders"]} >= user_orders
    result = results["lab"]
    assert result["orders"] == len(run_keys)
    assert result["idempotency_keys"] == len(run_keys)
    assert result["order_items"] == len(during["order_items"]) - len(before["order_items"])
    assert result["order_items"] == len(run_keys) + 2  # one line each, three in the multi-line order
    assert result["products_restored"] == 300  # the restock touched every one
    assert result["products_recorded"] == 300
    assert result["cache_cleared"] is True
    assert stock_via_api(lab["product_url"], 7) == cached_before  # the API answers the stock as found
    assert f"lab: deleted {len(run_keys):,} orders" in said[-1]

    # Twice is harmless: nothing left to delete, nothing to put back.
    again = runner.Running(run_id)
    again.recorded = running.recorded
    second = again.put_back(said.append)["lab"]
    assert (second["orders"], second["order_items"], second["idempotency_keys"],
            second["products_restored"]) == (0, 0, 0, 0)  # fmt: skip
    assert rows(lab["database_url"]) == before


@needs_tools
def test_a_run_that_fails_midway_still_cleans_up(lab):
    """run_plan's finally: a run that dies after its first case leaves the lab as found all the same."""
    before = rows(lab["database_url"])
    target = {"name": "lab-direct", "mode": "lab", "path": "gateway", "scope": "lab", "prefix": [],
              "products_url": lab["product_url"], "orders_url": lab["order_url"], "lua_dir": str(LUA),
              "tools": ["wrk"], "lab": {"devices": [], "subnets": [], "gateways": []}}  # fmt: skip
    plan = {"floor": {"enabled": False}, "targets": [target], "endpoints": ["orders"], "rounds": 2,
            "warmup_s": 1, "max_seconds": 60, "restock": 1_000_000,
            "load": {"threads": 2, "connections": 8, "duration_s": 1},
            "databases": {"lab": lab["database"]}, "operator_tokens": {"lab": lab["read_token"]}}  # fmt: skip
    said: list[str] = []

    def log(message: str) -> None:
        said.append(message)
        if message.startswith("r1 "):
            raise KeyboardInterrupt  # Ctrl-C right after the first case

    out = Path(tempfile.mkdtemp())
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_plan(plan, out, log=log)
        report = json.loads((out / "report.json").read_text())
    finally:
        shutil.rmtree(out)
    assert report["cleanup"]["lab"]["orders"] > 0
    assert report["cleanup"]["lab"]["orders"] == report["cleanup"]["lab"]["idempotency_keys"]
    assert report["cleanup"]["lab"]["key_prefix"] == cleanup.run_prefix(report["run_id"])
    assert rows(lab["database_url"]) == before
    assert any(line.startswith("cleanup lab: deleted") for line in said)


@needs_tools
def test_a_run_killed_hard_is_cleaned_up_afterwards_from_its_results_folder(lab, tmp_path):
    """SIGKILL leaves no `finally`: `python -m shoplab_bench cleanup DIR` does it from the saved record."""
    before = rows(lab["database_url"])
    target = {"name": "lab-direct", "mode": "lab", "path": "gateway", "scope": "lab", "prefix": [],
              "products_url": lab["product_url"], "orders_url": lab["order_url"], "lua_dir": str(LUA),
              "tools": ["wrk"], "lab": {"devices": [], "subnets": [], "gateways": []}}  # fmt: skip
    plan = {"floor": {"enabled": False}, "targets": [target], "endpoints": ["orders"], "rounds": 5,
            "warmup_s": 1, "max_seconds": 60, "load": {"threads": 2, "connections": 8, "duration_s": 1},
            "databases": {"lab": lab["database"]}, "operator_tokens": {"lab": lab["read_token"]}}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(BENCH), "MPLBACKEND": "Agg"}
    argv = [sys.executable, "-m", "shoplab_bench", "run", str(tmp_path / "plan.json"), str(out)]
    run = subprocess.Popen(argv, cwd=BENCH, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ((out / "run.log").exists() and "\nr1 " in (out / "run.log").read_text()):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before its first case"
            time.sleep(0.1)
    finally:
        run.kill()
        run.wait()
    time.sleep(1)  # requests the server had in hand when wrk died
    assert not (out / "report.json").exists()  # no finally ran
    assert rows(lab["database_url"]) != before  # the run's orders and the restocked stock are there
    saved = json.loads((out / cleanup.RECORDED).read_text())
    assert cleanup.RUN_ID.match(saved["run_id"])

    done = subprocess.run([sys.executable, "-m", "shoplab_bench", "cleanup", str(out)], cwd=BENCH, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cleanup lab: deleted" in done.stdout
    assert rows(lab["database_url"]) == before


@needs_tools
def test_a_lab_in_a_vm_is_cleaned_through_one_quoted_command_line(lab):
    """bench_lab=vm: psql and redis-cli run in the VM through `ssh … --`, which hands its last argument to
    the VM's shell; `sh -c` is that shell here, so the stock's JSON and the prefix must survive quoting."""
    run_id = cleanup.new_run_id()
    before = rows(lab["database_url"])
    # A port as a number, as Ansible's templating makes it in a plan: the command line is text all the same.
    remote = {**lab["database"], "via": ["sh", "-c"]}
    remote["cache"] = [int(arg) if arg.isdigit() else arg for arg in remote["cache"]]
    target = {"mode": "lab", "name": "vm-netns-published", "products_url": lab["product_url"], "prefix": []}
    running = runner.Running(run_id)
    said: list[str] = []
    runner.record_stock([target], {"databases": {"lab": remote}}, tools.Load(), running, said.append)
    assert len(running.recorded["lab"][1]) == 300
    runner.restock(target, 300, 1_000_000, lab["operator_token"])
    place(lab["order_url"], [(7, 3), (8, 1)], key=cleanup.key_nonce(run_id, "0" * 12) + "-1-1")
    assert rows(lab["database_url"]) != before

    result = running.put_back(said.append)["lab"]

    assert (result["orders"], result["order_items"], result["products_restored"]) == (1, 2, 300)
    assert result["cache_cleared"] is True
    assert rows(lab["database_url"]) == before
