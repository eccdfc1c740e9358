"""The fault drills' data (plugins/filter/shoplab_drills.py) and their harness (drills/shoplab_drill).

Pure Python: the drill files and bad copies of them, the set checker fed a lost and a duplicated order,
the analysis on made-up attempts, healing after an exception and the dead man's switch, and the client's
load against a small HTTP server on loopback that answers like the shop (503 first, then 201). The faults
themselves and the lab are left to the Molecule scenarios.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import shoplab_drills as drills
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "drills"), str(ROOT / "bench")]

from shoplab_drill import analysis, checker, deadman, runner  # noqa: E402
from shoplab_drill.load import Attempt, Load, LoadSettings, backoff  # noqa: E402

CATALOGUE = drills.shoplab_drill_catalogue(str(ROOT / "drills"))
KINDS = {d["name"]: d for d in CATALOGUE}


# ---- the data --------------------------------------------------------------------------------------


def test_every_fault_kind_of_the_issue_is_a_drill_in_both_modes():
    faults = {(d["fault"]["action"], d["fault"]["target"]) for d in CATALOGUE}
    assert faults == {
        ("kill", "product"),
        ("kill", "order"),
        ("kill", "registry"),
        ("stop", "redis"),
        ("stop", "postgres"),
        ("lossy-link", "backend-database"),
        ("partition", "backend-database"),
    }
    for mode in drills.MODES:
        assert len(drills.shoplab_drill_select(CATALOGUE, "", mode)) == len(CATALOGUE)


def test_the_issues_expectations_are_written():
    assert KINDS["redis-stopped"]["expect"]["failed_reads_max"] == 0
    assert KINDS["redis-stopped"]["expect"]["read_p99_ms_max"] == 100
    assert KINDS["product-killed"]["expect"]["error_window_s_max"] <= 1
    assert KINDS["postgres-restarted"]["expect"]["steady_state_s_max"] <= 5
    link = {"delay_ms": 200, "jitter_ms": 50, "loss_percent": 5}
    assert KINDS["database-link-lossy"]["parameters"].items() >= link.items()
    assert KINDS["database-partitioned"]["parameters"]["duration_s"] == 10
    assert all(d["expect"]["lost"] == 0 and d["expect"]["duplicated"] == 0 for d in CATALOGUE)


def test_every_kind_in_turn_starts_with_processes_and_ends_with_the_network():
    names = [d["name"] for d in CATALOGUE]
    assert names.index("product-killed") < names.index("redis-stopped") < names.index("database-partitioned")


def _bad(tmp_path: Path, name: str, change) -> str:
    data = yaml.safe_load((ROOT / "drills" / f"{name}.yml").read_text())
    change(data)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


BAD = [
    ("redis-stopped", lambda d: d["expect"].pop("lost"), "expect.lost: missing"),
    (
        "redis-stopped",
        lambda d: d["expect"].update(read_p99_ms_max="fast"),
        "expect.read_p99_ms_max: must be",
    ),
    ("redis-stopped", lambda d: d["expect"].update(lost=1), "expect.lost: must be 0"),
    ("redis-stopped", lambda d: d["expect"].update(speed=1), "expect.speed: unknown field"),
    ("redis-stopped", lambda d: d["expect"].update(unknown_max=-1), "expect.unknown_max: must be >= 0"),
    ("redis-stopped", lambda d: d["fault"].update(action="explode"), "fault.action: unknown action"),
    ("redis-stopped", lambda d: d["fault"].update(target="gateway"), "fault.target: stop acts on"),
    (
        "redis-stopped",
        lambda d: d["parameters"].update(duration_s=-1),
        "parameters.duration_s: must be between",
    ),
    ("redis-stopped", lambda d: d["parameters"].update(duration_s=True), "parameters.duration_s: must be"),
    ("redis-stopped", lambda d: d["parameters"].update(delay_ms=5), "parameters.delay_ms: only a lossy-link"),
    ("redis-stopped", lambda d: d.update(modes=["kubernetes"]), ".modes: must list"),
    ("redis-stopped", lambda d: d.update(title=" "), ".title: must not be empty"),
    ("redis-stopped", lambda d: d.pop("why"), ".why: missing"),
    ("redis-stopped", lambda d: d["fault"].update(instance=2), "fault.instance: only a kill"),
    ("database-link-lossy", lambda d: d["parameters"].pop("delay_ms"), "parameters.delay_ms: missing"),
]


@pytest.mark.parametrize(("name", "change", "message"), BAD, ids=[b[2] for b in BAD])
def test_a_bad_drill_is_refused_naming_the_file_and_the_field(tmp_path, name, change, message):
    path = _bad(tmp_path, name, change)
    with pytest.raises(drills.DrillError) as refused:
        drills.shoplab_drill_load(path)
    assert str(refused.value).startswith(path)
    assert message in str(refused.value)


def test_a_file_that_is_not_yaml_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("title: [unclosed\n")
    with pytest.raises(drills.DrillError, match=rf"^{path}: not valid YAML"):
        drills.shoplab_drill_catalogue(str(tmp_path))


def test_the_requested_fault_and_duration_are_checked():
    with pytest.raises(drills.DrillError, match="lab_drill_fault: no drill 'meteor'"):
        drills.shoplab_drill_select(CATALOGUE, "meteor", "netns")
    with pytest.raises(drills.DrillError, match="lab_drill_duration_s: must be a number"):
        drills.shoplab_drill_select(CATALOGUE, "", "netns", "long")
    with pytest.raises(drills.DrillError, match="mode: must be one of"):
        drills.shoplab_drill_select(CATALOGUE, "", "vm")
    picked = drills.shoplab_drill_select(CATALOGUE, "redis-stopped", "docker", "7")
    assert [d["name"] for d in picked] == ["redis-stopped"]
    assert picked[0]["parameters"]["duration_s"] == 7


# ---- the set checker -------------------------------------------------------------------------------


def _client(n: int) -> list[checker.ClientOrder]:
    return [checker.ClientOrder(f"k{i}", "acked", 100 + i) for i in range(n)]


def _db(n: int, **changes) -> checker.DatabaseState:
    state = checker.DatabaseState(
        keys={f"k{i}": 100 + i for i in range(n)}, orders=[100 + i for i in range(n)], stock_before=50,
        stock_after=50 - n,
    )  # fmt: skip
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def test_the_set_checker_passes_a_consistent_run():
    verdict = checker.check(_client(5), _db(5))
    assert verdict.ok and verdict.lost == 0 and verdict.duplicated == 0 and verdict.stock_consistent


def test_the_set_checker_fails_a_lost_order():
    db = _db(5)
    del db.keys["k3"]  # acknowledged, then gone: its key row and its order
    db.orders.remove(103)
    db.stock_after += 1
    verdict = checker.check(_client(5), db)
    assert not verdict.ok
    assert verdict.lost == 1 and verdict.lost_keys == ["k3"]
    assert verdict.duplicated == 0


def test_the_set_checker_fails_a_duplicated_order():
    # A retry that created a second order: one more order of the product, one more unit of stock gone.
    db = _db(5, orders=[100, 101, 102, 103, 104, 999], stock_after=44)
    verdict = checker.check(_client(5), db)
    assert not verdict.ok
    assert verdict.duplicated == 1 and verdict.duplicated_orders == [999]
    assert verdict.lost == 0


def test_another_clients_keyed_order_is_not_a_duplicate():
    db = _db(5, orders=[100, 101, 102, 103, 104, 777], stock_after=44, foreign=[777])
    verdict = checker.check(_client(5), db)
    assert verdict.ok and verdict.foreign == 1 and verdict.duplicated == 0


def test_the_set_checker_fails_stock_taken_without_an_order():
    verdict = checker.check(_client(5), _db(5, stock_after=43))
    assert not verdict.ok and not verdict.stock_consistent and verdict.duplicated == 2


def test_unknown_outcomes_are_counted_and_resolved_never_dropped():
    client = [*_client(3), checker.ClientOrder("k3", "unknown"), checker.ClientOrder("k4", "unknown")]
    db = _db(4)  # k3 was committed, k4 never was
    verdict = checker.check(client, db)
    assert verdict.ok
    assert (verdict.unknown, verdict.unknown_committed, verdict.unknown_not_committed) == (2, 1, 1)


def test_an_order_refused_to_the_client_but_committed_fails():
    client = [*_client(2), checker.ClientOrder("k2", "rejected")]
    verdict = checker.check(client, _db(3))
    assert not verdict.ok and verdict.phantom == 1


# ---- the analysis ----------------------------------------------------------------------------------


def _attempt(kind: str, start: float, ok: bool = True, ms: float = 10, cache: str | None = "HIT") -> Attempt:
    return Attempt(kind, 0, 1, start, start + ms / 1000, 200 if ok else 503, cache=cache)


def test_error_window_first_heal_success_and_steady_state():
    marks = {"fault_start": 10.0, "fault_on": 10.2, "heal_start": 15.0, "healed": 15.5}
    attempts = [_attempt("order", t / 10) for t in range(0, 100)]  # steady, 0-10 s
    attempts += [_attempt("order", 10.5, ok=False), _attempt("order", 12.0, ok=False, ms=3000)]
    attempts += [_attempt("read", 11.0, cache="BYPASS"), _attempt("read", 12.0, ms=150, cache="BYPASS")]
    attempts += [_attempt("order", 15.7), *(_attempt("order", 16 + t / 10) for t in range(50))]
    figures = analysis.analyse(attempts, marks, 0.0, 21.0)
    assert figures["error_window"]["seconds"] == pytest.approx(4.5)  # 10.5 .. 15.0
    assert figures["failed_order_attempts"] == 2 and figures["failed_reads"] == 0
    assert figures["first_success_s"] == pytest.approx(0.71)  # from the heal's start
    assert figures["steady_state_s"] == 0.0
    assert figures["reads_during_fault"]["by_cache"] == {"BYPASS": 2}
    assert figures["reads_during_fault"]["p99_ms"] == pytest.approx(150)
    rows = analysis.judge(
        {"lost": 0, "duplicated": 0, "error_window_s_max": 1, "read_p99_ms_max": 100},
        figures,
        checker.check(_client(1), _db(1)).as_dict(),
    )
    assert {r["expectation"]: r["met"] for r in rows} == {
        "lost": True, "duplicated": True, "error_window_s_max": False, "read_p99_ms_max": False,
        "set_checker": True,
    }  # fmt: skip


def test_steady_state_waits_for_the_last_failure_after_the_heal():
    attempts = [_attempt("order", 10 + t / 10) for t in range(100)] + [_attempt("order", 13.1, ok=False)]
    assert analysis.steady_state_after(attempts, 10.0, 20.0, 10.0) == 3.5
    slow = [_attempt("order", 10 + t / 10, ms=200 if t < 40 else 10) for t in range(100)]
    assert analysis.steady_state_after(slow, 10.0, 20.0, 10.0) == 4.0  # the median is back after 4 s
    assert (
        analysis.steady_state_after([*attempts, _attempt("order", 19.9, ok=False)], 10.0, 20.0, 10.0) is None
    )


def test_backoff_is_bounded_and_honours_retry_after_up_to_the_cap():
    assert all(0.05 <= backoff(1, 0.1, 1.0) <= 0.1 for _ in range(50))
    assert all(0.5 <= backoff(10, 0.1, 1.0) <= 1.0 for _ in range(50))
    assert backoff(1, 0.1, 1.0, retry_after="30") == 1.0


# ---- healing ---------------------------------------------------------------------------------------


def test_healing_runs_after_an_exception():
    healed = []
    with pytest.raises(RuntimeError, match="inject failed"), deadman.healing(lambda: healed.append(True)):
        raise RuntimeError("inject failed")
    assert healed == [True]


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def test_the_dead_mans_switch_heals_when_nobody_disarms_it(tmp_path):
    healed = tmp_path / "healed"
    heal = [sys.executable, "-c", f"open({str(healed)!r}, 'w').write('yes')"]
    deadman.arm(heal, 0.3, tmp_path / "pid", tmp_path / "log")
    assert _wait_for(healed, 10)
    assert "fired" in (tmp_path / "log").read_text()


def test_a_disarmed_switch_does_not_heal(tmp_path):
    healed = tmp_path / "healed"
    heal = [sys.executable, "-c", f"open({str(healed)!r}, 'w').write('yes')"]
    deadman.arm(heal, 1.0, tmp_path / "pid", tmp_path / "log")
    time.sleep(0.2)
    assert deadman.disarm(tmp_path / "pid") is True
    assert not _wait_for(healed, 1.5)
    assert deadman.disarm(tmp_path / "pid") is False  # twice is harmless


# ---- the client against a shop on loopback ---------------------------------------------------------


class Shop(BaseHTTPRequestHandler):
    """Answers like the gateway: each order key's first attempt 503, the next ones 201 (a replay after
    the first success); reads 200 with X-Cache. Keeps its orders, as PostgreSQL would."""

    orders: dict[str, int]
    attempts: dict[str, int]
    fail_first = True
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict, **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer(200, {"id": 1}, X_Cache="HIT", X_Upstream_Instance="product-1")

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"]
        with self.lock:
            seen = self.attempts[key] = self.attempts.get(key, 0) + 1
            if seen == 1 and self.fail_first:
                status, body = 503, {"title": "try again"}
            else:
                status, body = 201, {"id": self.orders.setdefault(key, 1000 + len(self.orders))}
        self._answer(status, body, X_Upstream_Instance="order-1")


@pytest.fixture
def shop():
    Shop.orders, Shop.attempts, Shop.fail_first = {}, {}, True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Shop
    server.shutdown()


def _settings(url: str) -> LoadSettings:
    return LoadSettings(
        base_url=url, product_id=1, products=3, order_rate=20, read_rate=10,
        key_prefix="shoplab-drill-20261201T000000Z-abcdef-test-", backoff_base_s=0.01, backoff_cap_s=0.05,
        give_up_s=5, max_workers=16,
    )  # fmt: skip


def test_orders_are_retried_with_the_same_key_until_acknowledged(shop):
    url, handler = shop
    load = Load(_settings(url))
    load.start()
    time.sleep(1.0)
    load.stop(wait=True)
    assert 15 <= len(load.orders) <= 25
    assert all(o.outcome == "acked" and o.attempts == 2 for o in load.orders)
    assert all(handler.attempts[o.key] == 2 for o in load.orders)
    assert {a.label for a in load.attempts if a.kind == "order"} == {"503", "201"}
    assert {a.cache for a in load.attempts if a.kind == "read"} == {"HIT"}


class FakeDatabase:
    """What run_drill asks PostgreSQL, answered from the loopback shop's own orders."""

    mode = "netns"
    cache: list[str] = []  # noqa: RUF012 (no cache command: nothing to forget)

    def __init__(self, handler):
        self.handler = handler
        self.scripts: list[str] = []

    def run(self, script: str, **variables: str) -> str:
        self.scripts.append(script)
        if "json_build_object('id', id" in script:
            return json.dumps({"id": 1, "stock": 10, "updated_at": "2026-12-01T00:00:00Z"})
        if script.lstrip().startswith("UPDATE products"):
            return f"1000|{time.time()}\n"
        if "'keys'" in script:
            orders = dict(self.handler.orders)
            return json.dumps({"stock": 1000 - len(orders), "keys": orders, "orders": sorted(orders.values()),
                               "quantities": [1]})  # fmt: skip
        if "bench_run_keys" in script:
            return "order_items|1\norders|1\nidempotency_keys|1\nproducts_restored|1\n"
        raise AssertionError(f"unexpected SQL: {script}")


def _plan(url: str) -> dict:
    drill = {**KINDS["product-killed"], "parameters": {"steady_s": 1, "duration_s": 0, "recovery_s": 1}}
    return {
        "run_id": "20261201T000000Z-abcdef",
        "mode": "netns",
        "drill": drill,
        "target": {"name": "loopback", "orders_url": url, "products_url": url, "prefix": [], "lab": {}},
        "database": {"psql": []},
        "cleanup": True,
        "load": {"order_rate": 10, "read_rate": 5, "product_id": 1, "products": 3, "connect_timeout_s": 1,
                 "attempt_timeout_s": 2, "read_timeout_s": 2, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
                 "give_up_s": 5, "heal_wait_s": 10},
    }  # fmt: skip


def test_a_drill_end_to_end_on_loopback_is_checked_and_cleaned_up(shop, tmp_path):
    url, handler = shop
    handler.fail_first = False  # a healthy shop: the drill refuses to inject into a failing one
    db = FakeDatabase(handler)

    def fault() -> None:  # what roles/lab_drill does around its inject and heal tasks
        state = tmp_path / "state"
        while not state.exists() or "steady" not in state.read_text():
            time.sleep(0.05)
        for event in ("fault_start", "fault_on", "heal_start", "healed"):
            runner.write_mark(tmp_path, event)

    threading.Thread(target=fault, daemon=True).start()
    result = runner.run_drill(
        _plan(url), tmp_path, log=lambda _: None, database=db, check_route=lambda _: None
    )
    assert result["error"] is None
    assert result["verdict"]["lost"] == 0 and result["verdict"]["duplicated"] == 0
    assert result["verdict"]["acknowledged"] == len(handler.orders) > 0
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert "bench_run_keys" in db.scripts[-1]  # cleaned up last
    assert json.loads((tmp_path / "result.json").read_text())["ok"] is result["ok"]


def test_the_data_is_cleaned_up_after_an_exception(shop, tmp_path):
    url, handler = shop
    db = FakeDatabase(handler)

    class Broken(Load):
        def start(self):
            super().start()
            raise RuntimeError("the load generator broke")

    result = runner.run_drill(
        _plan(url), tmp_path, log=lambda _: None, database=db, load_factory=Broken, check_route=lambda _: None
    )
    assert "the load generator broke" in result["error"]
    assert result["ok"] is False
    assert "bench_run_keys" in db.scripts[-1]  # the drill's orders deleted, the stock put back
    assert (tmp_path / "state").read_text().startswith("failed")
