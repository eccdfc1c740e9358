"""timeline.png for one drill: successes and failures per 100 ms, orders and reads, the fault shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def render_timeline(result: dict, path: Path) -> Path | None:
    bins = result.get("timeline")
    if not bins:
        return None
    times = result["figures"]["times"]
    start, width = bins["start"], bins["width"]
    xs = [i * width for i in range(len(bins["order_ok"]))]

    def rel(t: float | None) -> float | None:
        return None if t is None else t - start

    fig, axes = plt.subplots(2, 1, figsize=(11, 5.8), sharex=True)
    for ax, kind, title in ((axes[0], "order", "orders (attempts)"), (axes[1], "read", "catalogue reads")):
        ok, failed = bins[f"{kind}_ok"], bins[f"{kind}_failed"]
        ax.bar(xs, ok, width=width, align="edge", color="#2ca02c", label="success")
        ax.bar(xs, failed, width=width, align="edge", bottom=ok, color="#d62728", label="failed")
        lo, hi = rel(times.get("fault_start")), rel(times.get("healed"))
        if lo is not None and hi is not None and hi > lo:
            ax.axvspan(lo, hi, color="#ff7f0e", alpha=0.15, label="fault (inject to healed)")
        for mark, style in (("fault_on", ":"), ("heal_start", "--")):
            if times.get(mark) is not None:
                ax.axvline(rel(times[mark]), color="#ff7f0e", ls=style, lw=1)
        ax.set_ylabel(f"{title}\nper {int(width * 1000)} ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    axes[1].set_xlabel("seconds since the load started (dotted: fault on, dashed: heal starts)")
    drill = result["drill"]
    rows = result["expectations"]
    met = sum(row["met"] for row in rows)
    fig.suptitle(f"{drill['name']} ({result['mode']}): {drill['title']}; expectations met {met}/{len(rows)}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
