"""A lab over several VMs beside a lab of one VM: what crossing hosts costs, from this run and a reference.

In a lab over three VMs (netns mode) the gateway's VM sends every product and order request to instances
on the other VMs over VXLAN; in a lab of one VM they stay on one bridge. The same published target
(`vm-<mode>-published`, loaded from this machine with the same tools and settings) measured on both
gives the cost of crossing hosts: VXLAN's encapsulation and the underlay, plus the other VMs' scheduling
(the figures say what all of it costs together, not VXLAN alone). Two labs cannot run at once on the VM
network here, so the one-VM figures come from an earlier run: `plan["reference"]` (a results folder), or
the newest run in the results folder that measured a lab of one VM in the same mode.
"""

from __future__ import annotations

import json
from pathlib import Path

from shoplab_bench.summary import aggregate

KEYS = ("target", "endpoint", "tool")


def _vm_modes(plan: dict) -> set[str]:
    return {t["mode"] for t in plan.get("targets", []) if t.get("scope") == "vm"}


def find_reference(plan: dict) -> Path | None:
    """The report.json of a lab of one VM to compare with, or None (none measured yet)."""
    if plan.get("reference"):
        given = Path(plan["reference"])
        return given / "report.json" if given.is_dir() else given
    folder = Path(plan.get("results_dir") or ".")
    modes = _vm_modes(plan)
    # Results folders are named by their UTC start time: the newest first.
    for path in sorted(folder.glob("*/report.json"), reverse=True):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        theirs = other.get("plan", {})
        if int(theirs.get("lab_hosts", 1)) == 1 and _vm_modes(theirs) & modes and other.get("cases"):
            return path
    return None


def reference(plan: dict) -> dict | None:
    """What report.json keeps of the reference run: where it is, when it ran, its published targets' rows."""
    path = find_reference(plan)
    if path is None or not path.is_file():
        return None
    other = json.loads(path.read_text())
    names = {t["name"] for t in other.get("plan", {}).get("targets", []) if t.get("scope") == "vm"}
    return {
        "path": str(path),
        "started": other.get("started", ""),
        "commit": other.get("environment", {}).get("commit", ""),
        "rows": [r for r in aggregate(other["cases"]) if r["target"] in names],
    }


def _median(stats: dict | None) -> float | None:
    return stats["median"] if stats else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict], plan: dict, ref: dict | None) -> list[str]:
    """The report's section: each published case of this run beside the same case on one VM."""
    hosts = int(plan.get("lab_hosts", 1))
    if hosts <= 1:
        return []
    lines = [f"## Across hosts: this lab over {hosts} VMs beside a lab of one VM", ""]
    if ref is None:
        missing = (
            "No run of a lab of one VM in this mode is in the results folder: measure one (`make vm`, "
            "`make up MODE=netns LAB=vm`, `make bench LAB=vm`) and run this again, or pass "
            "`-e bench_vm_reference=<results folder>`."
        )
        return [*lines, missing, ""]
    theirs = {tuple(r[k] for k in KEYS): r for r in ref["rows"]}
    lines += [
        f"Reference: `{ref['path']}` ({ref['started'][:19]}Z, commit `{ref['commit'][:12]}`). Every request "
        f"here crosses hosts: the gateway's VM reaches the product and order instances on the others over "
        "VXLAN (and the datastores' VM from them); on one VM the same hops stay on its bridges. The "
        "difference is what crossing hosts costs: encapsulation, the underlay and the other VMs' "
        "scheduling together (on TCG mostly the last: read the ratios, not the milliseconds, as the "
        "trend).",
        "",
        "| endpoint | tool | req/s, 1 VM | req/s, "
        f"{hosts} VMs | ratio | p50 ms, 1 VM | p50 ms, {hosts} VMs "
        "| p50 added ms | p99 ms, 1 VM | p99 ms, "
        f"{hosts} VMs |",
        "| " + " | ".join(["---"] * 10) + " |",
    ]
    for row in rows:
        if int(row.get("runs", 0)) == 0 or not row["target"].startswith("vm-"):
            continue
        one = theirs.get(tuple(row[k] for k in KEYS))
        if one is None:
            continue
        ours_rps, one_rps = _median(row["rps"]), _median(one["rps"])
        ours_p50, one_p50 = _median(row["latency_ms"]["p50"]), _median(one["latency_ms"]["p50"])
        ratio = ours_rps / one_rps if ours_rps and one_rps else None
        added = ours_p50 - one_p50 if ours_p50 is not None and one_p50 is not None else None
        one_p99, ours_p99 = _median(one["latency_ms"]["p99"]), _median(row["latency_ms"]["p99"])
        cells = [
            row["endpoint"], row["tool"], _fmt(one_rps, ",.0f"), _fmt(ours_rps, ",.0f"), _fmt(ratio, ".2f"),
            _fmt(one_p50, ".1f"), _fmt(ours_p50, ".1f"), _fmt(added, "+.1f"), _fmt(one_p99, ".1f"),
            _fmt(ours_p99, ".1f"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]
