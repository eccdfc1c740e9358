"""One drill's client side: route check, stock, load, wait for the fault to come and go, check, clean.

roles/lab_drill starts this (`python -m shoplab_drill run PLAN DIR`) in the background where the lab's
gateway is reachable (inside the netns lab host's network namespace, or on the docker host), waits
for `state` to say `steady`, injects the fault and heals it with Ansible tasks on the lab host, and
writes marks around them (`marks.jsonl`). This side never touches the fault: it only measures.

Files in the drill's folder: plan.json (from the role), state, marks.jsonl, recorded.json (what the
clean-up puts back, written before the first change), attempts.json, result.json, timeline.png,
cleanup.json, run.log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from shoplab_bench import guard
from shoplab_bench.cleanup import Database

from shoplab_drill import analysis, checker, db
from shoplab_drill.deadman import healing
from shoplab_drill.load import Load, LoadSettings, attempts_as_rows, orders_as_dicts

MARKS = "marks.jsonl"
STATE = "state"
POLL_S = 0.1


class DrillFailed(RuntimeError):
    """The drill could not run (the lab was unhealthy before the fault, a route was refused, …)."""


def write_mark(folder: Path, event: str, clock: Callable[[], float] = time.time) -> dict:
    mark = {"event": event, "t": clock()}
    with open(folder / MARKS, "a") as out:
        out.write(json.dumps(mark) + "\n")
    return mark


def read_marks(folder: Path) -> dict[str, float]:
    """The last time of each event (a re-run heal writes heal_start/healed again: the last one counts)."""
    marks: dict[str, float] = {}
    try:
        lines = (folder / MARKS).read_text().splitlines()
    except OSError:
        return marks
    for line in lines:
        try:
            mark = json.loads(line)
            marks[mark["event"]] = float(mark["t"])
        except (ValueError, KeyError, TypeError):
            continue
    return marks


def set_state(folder: Path, text: str) -> None:
    tmp = folder / (STATE + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(folder / STATE)


def settings_of(plan: dict) -> LoadSettings:
    load = plan["load"]
    drill = plan["drill"]
    return LoadSettings(
        base_url=plan["target"]["orders_url"].rstrip("/"),
        product_id=int(load["product_id"]),
        products=int(load["products"]),
        order_rate=float(load["order_rate"]),
        read_rate=float(load["read_rate"]),
        key_prefix=key_prefix(plan["run_id"], drill["name"]),
        connect_timeout_s=float(load["connect_timeout_s"]),
        attempt_timeout_s=float(load["attempt_timeout_s"]),
        read_timeout_s=float(load["read_timeout_s"]),
        backoff_base_s=float(load["backoff_base_s"]),
        backoff_cap_s=float(load["backoff_cap_s"]),
        give_up_s=float(load["give_up_s"]),
    )


def key_prefix(run_id: str, drill: str) -> str:
    return db.check_prefix(f"{db.KEY_PREFIX}{run_id}-{drill}-")


def planned_orders(plan: dict) -> int:
    p, load = plan["drill"]["parameters"], plan["load"]
    seconds = p["steady_s"] + p["duration_s"] + load["heal_wait_s"] + p["recovery_s"]
    return int(seconds * float(load["order_rate"])) + 1


def run_drill(  # noqa: PLR0915 (one drill, start to end, in order)
    plan: dict,
    folder: Path,
    *,
    log: Callable[[str], None] = print,
    database: Database | None = None,
    load_factory: Callable[[LoadSettings], Load] = Load,
    check_route: Callable[[dict], object] | None = None,
) -> dict:
    """Run one drill's client side and return its result (also written to result.json)."""
    drill, params, load_plan = plan["drill"], plan["drill"]["parameters"], plan["load"]
    database = database or Database.of(plan["mode"], plan["database"])
    settings = settings_of(plan)
    prefix = settings.key_prefix
    set_state(folder, "preparing")
    result: dict = {"drill": drill, "mode": plan["mode"], "run_id": plan["run_id"],
                    "target": {k: plan["target"][k] for k in ("name", "orders_url")},
                    "load": {**load_plan, "key_prefix": prefix}, "error": None}  # fmt: skip
    recorded: dict | None = None
    load: Load | None = None

    def clean_up() -> None:
        if load is not None and load.stopped_at is None:
            log("stopping the load (orders in flight finish their retries)")
            load.stop(wait=True)
        if recorded is None or not plan.get("cleanup", True):
            return
        try:
            counts = db.clean(database, prefix, recorded)
            log(f"clean-up: {counts}")
        except (RuntimeError, OSError, ValueError) as error:
            counts = {"error": str(error)}
            log(f"clean-up FAILED: {error}; run: python -m shoplab_drill cleanup {folder}")
        result["cleanup"] = counts
        (folder / "cleanup.json").write_text(json.dumps(counts, indent=1) + "\n")

    try:
        with healing(clean_up):
            address = urlsplit(settings.base_url).hostname
            (check_route or _check_route)(plan["target"])
            log(f"route to {address} stays in the lab")
            recorded = db.record(database, settings.product_id)
            saved = {
                "prefix": prefix,
                "mode": plan["mode"],
                "database": plan["database"],
                "recorded": recorded,
            }
            (folder / "recorded.json").write_text(json.dumps(saved, indent=1, default=str) + "\n")
            stock_before, since = db.restock(database, settings.product_id, 2 * planned_orders(plan) + 100)
            log(f"product {settings.product_id}: stock {recorded['stock']} -> {stock_before} for the drill")
            load = load_factory(settings)
            load.start()
            _sleep_until(load.started_at + params["steady_s"])
            attempts, orders = load.snapshot()
            acked = sum(o.outcome == "acked" for o in orders)
            failed = sum(not a.ok for a in attempts)
            if acked == 0 or failed > max(2, len(attempts) // 20):
                raise DrillFailed(
                    f"the shop was not healthy before the fault: {acked} of {len(orders)} orders "
                    f"acknowledged, {failed} of {len(attempts)} requests failed in the steady period; "
                    "nothing was injected"
                )
            set_state(folder, "steady")
            log(f"steady: {acked} orders acknowledged, {len(attempts)} requests; waiting for the fault")
            deadline = load.started_at + params["steady_s"] + params["duration_s"] + load_plan["heal_wait_s"]
            while "healed" not in read_marks(folder) and time.time() < deadline:
                time.sleep(POLL_S)
            marks = read_marks(folder)
            if "healed" not in marks:
                result["error"] = "no heal was marked before the deadline (was the playbook stopped?)"
                log(result["error"])
            _sleep_until(marks.get("healed", time.time()) + params["recovery_s"])
            load.stop(wait=True)
            log(f"load stopped: {len(load.orders)} orders, {len(load.attempts)} attempts")
            attempts, orders = load.snapshot()
            marks = read_marks(folder)
            verdict = checker.check(
                [checker.ClientOrder(o.key, o.outcome, o.order_id) for o in orders],
                db.state(database, settings.product_id, prefix, since, stock_before),
            )
            figures = analysis.analyse(attempts, marks, load.started_at, load.stopped_at)
            result.update(
                figures=figures,
                verdict=verdict.as_dict(),
                expectations=analysis.judge(drill["expect"], figures, verdict.as_dict()),
                orders=_order_summary(orders),
                late_dispatch_s=load.late,
                timeline=analysis.timeline_bins(attempts, load.started_at, load.stopped_at),
                fault=_read_json(folder / "fault.json"),
            )
            (folder / "attempts.json").write_text(
                json.dumps({"attempts": attempts_as_rows(attempts), "orders": orders_as_dicts(orders)}) + "\n"
            )
    except (DrillFailed, guard.RouteRefused, RuntimeError, OSError, ValueError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        log(f"drill failed: {result['error']}")
        set_state(folder, f"failed: {error}")
    result["ok"] = result["error"] is None and all(row["met"] for row in result.get("expectations", []))
    (folder / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    if result.get("timeline"):
        from shoplab_drill.chart import render_timeline

        render_timeline(result, folder / "timeline.png")
    set_state(folder, "done" if result["error"] is None else f"failed: {result['error']}")
    return result


def _check_route(target: dict) -> None:
    """The benchmark's route guard, asked here: this process runs where the load leaves from."""
    guard.check(urlsplit(target["orders_url"]).hostname, guard.Lab.of(**target["lab"]))


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _order_summary(orders) -> dict:
    outcomes: dict[str, int] = {}
    for o in orders:
        outcomes[o.outcome] = outcomes.get(o.outcome, 0) + 1
    return {
        "placed": len(orders),
        "outcomes": outcomes,
        "retried": sum(o.attempts > 1 for o in orders),
        "replayed": sum(o.replayed for o in orders),
        "max_attempts": max((o.attempts for o in orders), default=0),
        "slowest_ack_s": round(max((o.acked_at - o.scheduled for o in orders if o.acked_at), default=0.0), 3),
    }
