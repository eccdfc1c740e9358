"""report.md and report.json of one `make drill` run: a summary table, then one section per drill."""

from __future__ import annotations

import contextlib
import json
import platform
from pathlib import Path


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _counts(counts: dict) -> str:
    return ", ".join(f"{label} x {n}" for label, n in counts.items()) or "none"


def load_results(run_dir: Path) -> list[dict]:
    results = []
    for path in sorted(run_dir.glob("*/result.json")):
        result = json.loads(path.read_text())
        result["folder"] = path.parent.name
        results.append(result)
    order = _run_order(run_dir)
    return sorted(results, key=lambda r: order.index(r["folder"]) if r["folder"] in order else len(order))


def _run_order(run_dir: Path) -> list[str]:
    try:
        return json.loads((run_dir / "drills.json").read_text())
    except (OSError, ValueError):
        return []


def summary_row(r: dict) -> str:
    name = f"`{r['drill']['name']}`"
    if r.get("error") and not r.get("figures"):
        return f"| {name} | **not run: {r['error']}** | | | | | | | |"
    f, v = r["figures"], r["verdict"]
    rows = r["expectations"]
    met = sum(row["met"] for row in rows)
    reads = f["reads_during_fault"]
    cache = ", ".join(f"{k} {n}" for k, n in reads["by_cache"].items()) or "none"
    verdict = (
        "met" if r["ok"] else "**missed: " + ", ".join(x["expectation"] for x in rows if not x["met"]) + "**"
    )
    return (
        f"| {name} | {verdict} ({met}/{len(rows)}) | {v['acknowledged']} / {v['lost']} / {v['duplicated']} / "
        f"{v['unknown']} | {f['failed_order_attempts']} / {f['failed_reads']} | "
        f"{_fmt(f['error_window']['seconds'], ' s')} | {_fmt(f['first_success_s'], ' s')} | "
        f"{_fmt(f['steady_state_s'], ' s')} | {reads['ok']}/{reads['count']} ({cache}), p99 "
        f"{_fmt(reads['p99_ms'], ' ms')} |"
    )


SUMMARY_HEAD = (
    "| drill | expectations | orders acked / lost / duplicated / unknown | failed order attempts / reads "
    "| error window | heal → first success | heal → steady | reads during the fault (served, from) |\n"
    "|---|---|---|---|---|---|---|---|"
)


def drill_section(r: dict) -> list[str]:
    d = r["drill"]
    lines = [f"## `{d['name']}`: {d['title']}", "", d["what"], "", f"*Why:* {d['why']}", ""]
    if r.get("fault"):
        for note in r["fault"].get("notes", []):
            lines.append(f"- **Fault:** {note}")
        lines.append("")
    if r.get("error"):
        lines += [f"**Error:** {r['error']}", ""]
    if not r.get("figures"):
        return lines
    f, v, t = r["figures"], r["verdict"], r["figures"]["times"]
    load, orders, params = r["load"], r["orders"], d["parameters"]
    during, base, window = f["reads_during_fault"], f["baseline"], f["error_window"]
    lines += ["| expectation | bound | measured | |", "|---|---|---|---|"]
    for x in r["expectations"]:
        met = "met" if x["met"] else "**MISSED**"
        lines.append(f"| {x['expectation']} | {x['bound']} | {_fmt(x['measured'])} | {met} |")
    lines += [
        "",
        f"- Load: {load['order_rate']} orders/s of product {load['product_id']} (quantity 1, keys "
        f"`{load['key_prefix']}<n>`), {load['read_rate']} reads/s; steady {params['steady_s']} s, fault "
        f"{_fmt(t['fault_s'], ' s')} (inject took {_fmt(t['inject_s'], ' s')}, heal "
        f"{_fmt(t['heal_s'], ' s')}), recovery {params['recovery_s']} s.",
        f"- Orders: {orders['placed']} placed, outcomes {_counts(orders['outcomes'])}; {orders['retried']} "
        f"retried, {orders['replayed']} answered as replays, at most {orders['max_attempts']} attempts, the "
        f"slowest acknowledged {orders['slowest_ack_s']} s after it was due.",
        f"- Unknown outcomes (client gave up): {v['unknown']} (committed {v['unknown_committed']}, not "
        f"committed {v['unknown_not_committed']}). Orders created: {v['orders_created']}, stock moved "
        f"{v['stock_moved']}; orders of the product another client placed meanwhile: {v.get('foreign', 0)}.",
        f"- Order attempts by status: {_counts(f['requests']['order_attempts'])}.",
        f"- Reads by status: {_counts(f['requests']['reads'])}.",
        f"- Reads during the fault: {during['count']}, served {during['ok']}, from "
        f"{_counts(during['by_cache'])} (X-Cache); p50 {_fmt(during['p50_ms'], ' ms')}, p99 "
        f"{_fmt(during['p99_ms'], ' ms')} (before the fault: p99 {_fmt(base['read_p99_ms'], ' ms')}). Orders "
        f"during the fault: p99 {_fmt(f['orders_during_fault_p99_ms'], ' ms')} (before: "
        f"{_fmt(base['order_p99_ms'], ' ms')}).",
        f"- Error window: {_fmt(window['seconds'], ' s')} ({window['failed']} failed requests, the first "
        f"{_fmt(window['first_from_fault_s'], ' s')} after the fault started, the last "
        f"{_fmt(window['last_from_heal_s'], ' s')} from the heal's start). Failed before the fault: "
        f"{f['failed_before_fault']}.",
        f"- Answered by: {_counts(f['upstreams'])}.",
    ]
    if r.get("cleanup"):
        lines.append(f"- Clean-up: {r['cleanup']}.")
    lines += ["", f"![{d['name']} timeline]({r['folder']}/timeline.png)", ""]
    return lines


def _why_missed(r: dict) -> str:
    return r.get("error") or ", ".join(x["expectation"] for x in r.get("expectations", []) if not x["met"])


def render_run(run_dir: Path) -> dict:
    results = load_results(run_dir)
    ok = bool(results) and all(r.get("ok") for r in results)
    meta = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((run_dir / "run.json").read_text())
    head = [
        f"# Fault drills {run_dir.name}",
        "",
        f"Mode `{meta.get('mode', results[0]['mode'] if results else '?')}`, "
        f"commit {meta.get('commit', '?')}, "
        f"kernel {platform.release()}, load average at the start {meta.get('loadavg', '?')}. "
        f"{'Every expectation met.' if ok else '**Expectations missed** (below).'}",
        "",
        SUMMARY_HEAD,
        *(summary_row(r) for r in results),
        "",
    ]
    body = [line for r in results for line in drill_section(r)]
    (run_dir / "report.md").write_text("\n".join(head + body) + "\n")
    compact = [{k: v for k, v in r.items() if k != "timeline"} for r in results]
    (run_dir / "report.json").write_text(
        json.dumps({"run": meta, "ok": ok, "drills": compact}, indent=1) + "\n"
    )
    missed = [f"{r['drill']['name']} ({_why_missed(r)})" for r in results if not r.get("ok")]
    text = "\n".join(head[4:]) + f"\nReport: {run_dir}/report.md, report.json, */timeline.png"
    if missed:
        text += "\nMISSED: " + "; ".join(missed)
    return {"ok": ok, "text": text}
