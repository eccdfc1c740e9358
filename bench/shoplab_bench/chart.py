"""chart.png: requests/s (median, min-max whiskers) and p99 latency per target, one panel per endpoint."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from shoplab_bench.summary import DESIGN_KEYS


def render_chart(rows: list[dict], path: Path) -> Path | None:
    wrk = [r for r in rows if r["tool"] == "wrk" and r["rps"]]
    endpoints = [e for e in DESIGN_KEYS if any(r["endpoint"] == e for r in wrk)]
    if not endpoints:
        return None
    fig, axes = plt.subplots(2, len(endpoints), figsize=(max(8.0, 5.4 * len(endpoints)), 8.5), squeeze=False)
    colors = {"floor": "#7f7f7f", "netns": "#1f77b4", "docker": "#d62728"}
    for col, endpoint in enumerate(endpoints):
        picked = [r for r in wrk if r["endpoint"] == endpoint]
        names = [r["target"] for r in picked]
        med = [r["rps"]["median"] for r in picked]
        err = [[m - r["rps"]["min"] for m, r in zip(med, picked, strict=True)],
               [r["rps"]["max"] - m for m, r in zip(med, picked, strict=True)]]  # fmt: skip
        bar_colors = [colors.get(r["mode"], "#2ca02c") for r in picked]
        top, bottom = axes[0][col], axes[1][col]
        top.bar(names, med, yerr=err, capsize=4, color=bar_colors)
        top.set_title(f"{DESIGN_KEYS[endpoint]} — wrk, 64 connections")
        top.set_ylabel("requests/s (median, min-max)")
        for x, m in enumerate(med):
            top.annotate(f"{m:,.0f}", (x, m), ha="center", va="bottom", fontsize=8)
        p99 = [r["latency_ms"]["p99"]["median"] if r["latency_ms"]["p99"] else 0 for r in picked]
        bottom.bar(names, p99, color=bar_colors)
        bottom.set_ylabel("p99 latency, ms (median)")
        if endpoint == "products":
            top.axhline(2000, ls="--", lw=1, color="k")
            bottom.axhline(50, ls="--", lw=1, color="k")
        for ax in (top, bottom):
            ax.tick_params(axis="x", labelrotation=35, labelsize=8)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
            ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=m) for m, c in colors.items() if any(r["mode"] == m for r in wrk)]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=max(1, len(handles)),
               fontsize=9, frameon=False)  # fmt: skip
    fig.suptitle("Shoplab: the same services on loopback, in namespaces, in Docker (dashed: targets)", y=0.99)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
