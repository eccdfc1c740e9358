"""report.json → report.md (tables, the design document's claim beside ours, the "why") and chart.png."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from shoplab_bench.acrosshosts import table as across_hosts_table
from shoplab_bench.summary import (
    DESIGN_DOC,
    DESIGN_KEYS,
    aggregate,
    check_targets,
    cpu_ms_per_request,
    find,
    median_rps,
    ratio,
    round_ratios,
)


def _range(stats: dict | None, fmt: str = "{:,.0f}") -> str:
    if not stats:
        return "-"
    return f"{fmt.format(stats['median'])} [{fmt.format(stats['min'])}-{fmt.format(stats['max'])}]"


def _ms(stats: dict | None) -> str:
    return f"{stats['median']:.1f}" if stats else "-"


def _pct(value: float | None) -> str:
    return f"{100 * value:.0f} %" if value is not None else "n/a"


CASE_COLUMNS = ["target", "tool", "req/s median [min-max]", "mean ms", "p50 ms", "p90 ms", "p99 ms",
                "requests", "non-2xx", "errors", "CPU % of one core (median)"]  # fmt: skip
DOC_COLUMNS = [
    "",
    "design document",
    "ours: ab, no keep-alive",
    "ours: ab -k",
    "ours: wrk, keep-alive (64 conn.)",
]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def case_table(rows: list[dict]) -> list[str]:
    lines = []
    for endpoint, title in DESIGN_KEYS.items():
        picked = [r for r in rows if r["endpoint"] == endpoint]
        if not picked:
            continue
        lines += [f"### {title}", "",
                  _row(CASE_COLUMNS), _row(["---"] * len(CASE_COLUMNS))]  # fmt: skip
        for r in picked:
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_percent"].items() if v >= 1) or "-"
            lat = r["latency_ms"]
            cells = [
                r["target"],
                r["tool"],
                _range(r["rps"]),
                *(_ms(lat[k]) for k in ("mean", "p50", "p90", "p99")),
            ]
            lines.append(_row([*cells, f"{r['requests']:,}", r["non_2xx"], r["errors"], cpu]))
        lines.append("")
    return lines


def _target_address(plan: dict, name: str) -> str:
    """host:port of a target's products URL in the plan (roles/bench renders it from the topology)."""
    target = next((t for t in plan.get("targets", []) if t.get("name") == name), {})
    return target.get("products_url", "").partition("://")[2].partition("/")[0]


def design_doc_table(rows: list[dict], plan: dict | None = None) -> list[str]:
    lines = [_row(DOC_COLUMNS), _row(["---"] * len(DOC_COLUMNS))]  # fmt: skip
    gateway = _target_address(plan or {}, "netns-gateway")
    netns_label = f"Linux namespaces (gateway {gateway})" if gateway else "Linux namespaces (gateway)"
    for mode, path, label in (("netns", "gateway", netns_label),
                              ("docker", "published", "Docker (published port, docker-proxy)"),
                              ("docker", "gateway", "Docker (container address, no userland proxy)"),
                              ("floor", "gateway", "loopback floor (no namespaces)")):  # fmt: skip
        doc = DESIGN_DOC.get(mode) if path != "gateway" or mode == "netns" else None
        if mode == "docker" and path == "published":
            doc = DESIGN_DOC["docker"]
        cells = []
        for tool in ("ab", "ab -k", "wrk"):
            row = find(rows, mode, path, "products", tool)
            if row and row["rps"]:
                cells.append(
                    f"{row['rps']['median']:,.0f} req/s, mean {row['latency_ms']['mean']['median']:.1f} ms"
                )
            else:
                cells.append("not run")
        doc_cell = f"{doc['rps']} req/s, mean {doc['mean_ms']:.0f} ms" if doc else "-"
        lines.append(f"| {label} | {doc_cell} | " + " | ".join(cells) + " |")
    netns = find(rows, "netns", "gateway", "products", "ab")
    docker = find(rows, "docker", "published", "products", "ab")
    lines.append("")
    doc_gain = DESIGN_DOC["netns"]["rps"] / DESIGN_DOC["docker"]["rps"] - 1
    line = f"Design document: namespaces {_pct(doc_gain)} more requests/s than Docker."
    if median_rps(netns) and median_rps(docker):
        ours = median_rps(netns) / median_rps(docker) - 1
        line += (f" Ours (same tool, no keep-alive): {_pct(ours)}; netns serves "
                 f"{median_rps(netns) / DESIGN_DOC['netns']['rps']:.0f}x the document's figure.")  # fmt: skip
    lines.append(line)
    return lines


def _p50(row: dict | None) -> float | None:
    return row["latency_ms"]["p50"]["median"] if row and row["latency_ms"]["p50"] else None


def _p99(row: dict | None) -> float | None:
    return row["latency_ms"]["p99"]["median"] if row and row["latency_ms"].get("p99") else None


def _why_tail(rows: list[dict], mode: str, say) -> None:
    """Where the p99 at saturation comes from: compare the gateway's with nginx's and a direct instance's."""
    gw, ng, direct = (_p99(find(rows, mode, path, "products")) for path in ("gateway", "nginx", "direct"))
    if gw is None or (ng is None and direct is None):
        return
    others = ", ".join(
        f"{name} {value:.1f} ms" for name, value in (("nginx", ng), ("one instance direct", direct)) if value
    )
    say(
        f"**Tail at saturation ({mode})**: p99 with 64 connections through our gateway {gw:.1f} ms; over the "
        f"same instances {others}. Where nginx or the instance alone is also above 50 ms, the tail comes "
        "mostly from the instances and the shared cores (load tool, services and datastores on 2 CPUs), "
        "not from the gateway."
    )


def _why_gateway(rows: list[dict], say) -> None:
    for mode in ("floor", "netns", "docker"):
        gw, direct = find(rows, mode, "gateway", "products"), find(rows, mode, "direct", "products")
        r = ratio(median_rps(gw), median_rps(direct))
        if r is not None:
            gw_cpu, prod_cpu = cpu_ms_per_request(gw, "gateway"), cpu_ms_per_request(direct, "product")
            say(f"**Gateway hop ({mode})**: overhead 1 - gw/direct = {_pct(1 - r)} of the throughput of one "
                f"product instance reached directly ({median_rps(gw):,.0f} vs {median_rps(direct):,.0f} req/s"
                + (f"; the gateway burns {gw_cpu:.2f} ms CPU per request" if gw_cpu else "")
                + (f", a product instance {prod_cpu:.2f} ms" if prod_cpu else "") + ").")  # fmt: skip
        g, d = (
            _p50(find(rows, mode, "gateway", "products", "hey")),
            _p50(find(rows, mode, "direct", "products", "hey")),
        )
        if g is not None and d is not None:
            say(
                f"**Latency of the gateway hop ({mode})**: at a fixed rate below saturation (hey), "
                f"p50 {g:.2f} ms through the gateway vs {d:.2f} ms direct: {g - d:+.2f} ms per request."
            )
        ng = find(rows, mode, "nginx", "products")
        r = ratio(median_rps(gw), median_rps(ng))
        if r is not None:
            ng_cpu = cpu_ms_per_request(ng, "nginx")
            cost = f"; nginx needs {ng_cpu:.2f} ms CPU per request" if ng_cpu else ""
            say(f"**nginx instead of our gateway ({mode})**: ours reaches {r:.2f}x nginx's throughput "
                f"over the same instances{cost}.")  # fmt: skip
        _why_tail(rows, mode, say)


def _why_docker(rows: list[dict], notes: dict | None, say) -> None:
    pub, nat = find(rows, "docker", "published", "products"), find(rows, "docker", "gateway", "products")
    r = ratio(median_rps(pub), median_rps(nat))
    if r is not None:
        proxy_cpu = cpu_ms_per_request(pub, "docker-proxy")
        say(
            f"**docker-proxy**: the published port (userland proxy, one more TCP connection and two copies "
            f"per request) costs {_pct(1 - r)} of the throughput of the container address"
            + (f" and {proxy_cpu:.2f} ms CPU per request in docker-proxy" if proxy_cpu else "")
            + "."
        )
    p = _p50(find(rows, "docker", "published", "products", "hey"))
    n = _p50(find(rows, "docker", "gateway", "products", "hey"))
    if p is not None and n is not None:
        say(
            f"**Latency of docker-proxy**: p50 {p:.2f} ms through the published port vs {n:.2f} ms to the "
            f"container address at the same fixed rate: {p - n:+.2f} ms per request."
        )
    for mode in ("netns", "docker"):
        r = ratio(median_rps(find(rows, mode, "gateway", "products")),
                  median_rps(find(rows, "floor", "gateway", "products")))  # fmt: skip
        if r is not None:
            say(
                f"**{mode} vs loopback**: the same gateway in {mode} serves {r:.2f}x what it serves on "
                "loopback (veth + bridge + routing + conntrack/iptables vs lo; and the lab's logging path)."
            )
    _why_docker_vs_netns(rows, say)
    limits = {k: float(v) for k, v in ((notes or {}).get("docker_cpu_limits") or {}).items() if float(v) > 0}
    if limits and nat:
        used = nat["cpu_percent"].get("gateway")
        caps = ", ".join(f"{k} {v:g}" for k, v in limits.items())
        capped = used is not None and "gateway" in limits and used >= 90 * limits["gateway"]
        say(f"**Docker CPU limits**: the Compose file caps containers at {caps} CPU; the docker gateway used"
            f" {used if used is not None else '?'} % of one core during GET /api/products"
            + (" - it ran into its cap, so docker mode measures the limit, not the network path." if capped
               else "."))  # fmt: skip


def _per_request(row: dict | None, groups: tuple[str, ...]) -> tuple[float | None, float | None]:
    """(context switches, ms of CPU) per request summed over `groups` of a row, None where not sampled."""
    if not row:
        return None, None
    counts = [row["switches_per_request"][g] for g in groups if g in row.get("switches_per_request", {})]
    cpu = [ms for ms in (cpu_ms_per_request(row, g) for g in groups) if ms is not None]
    return (sum(counts) if counts else None), (sum(cpu) if cpu else None)


# Differences smaller than this between two medians are within what interleaved rounds vary by here.
NOISE = 0.03

_CGROUPS_WHY = (
    " Both are veth + Linux bridge, and the load tool runs in this host's CPU cgroup for both. Ruled out"
    " by hand with the event-loop services (bench/README.md): the containers' CFS quota, a CPU cgroup per"
    " container, br_netfilter and Docker's FORWARD chains; the extra CPU shows in user, system and softirq"
    " time alike."
)
# Docker's engine processes: they carry every line a container writes to stdout or stderr to its log.
ENGINE_LOG_GROUPS = ("dockerd", "containerd")


def _why_docker_vs_netns(rows: list[dict], say) -> None:
    """Same veth + bridge path, same load host: the gap in throughput, context switches and CPU."""
    cases = (
        ("gateway", ("gateway", "product"), "the gateway and the product instances", "(no userland proxy)"),
        ("direct", ("product",), "the product instance", "(one product instance)"),
    )
    for path, groups, label, title in cases:
        netns, docker = find(rows, "netns", path, "products"), find(rows, "docker", path, "products")
        r = ratio(median_rps(docker), median_rps(netns))
        if r is None:
            continue
        (sw_n, cpu_n), (sw_d, cpu_d) = _per_request(netns, groups), _per_request(docker, groups)
        measured = ""
        if sw_n and sw_d:
            measured = f" Per request {label} switched context {sw_d:.1f} times in docker vs {sw_n:.1f}"
            cpu = f" and burnt {cpu_d:.2f} vs {cpu_n:.2f} ms of CPU" if cpu_n and cpu_d else ""
            measured += f" in netns{cpu}."
        # What was ruled out, only where there is a gap to explain: docker slower beyond the noise between
        # interleaved rounds, and switching more per request.
        slower = r < 1 - NOISE
        why_text = (
            _CGROUPS_WHY if path == "gateway" and slower and sw_n and sw_d and sw_d > 1.1 * sw_n else ""
        )
        engine = sum(cpu_ms_per_request(docker, g) or 0 for g in ENGINE_LOG_GROUPS)
        if path == "gateway" and slower and engine:
            # The engine copies every line a container writes to stdout or stderr into its log: the
            # access lines too with docker_stack_access_log=docker_logs (by default they go to files).
            why_text += (
                " Docker's engine (dockerd, containerd), which copies what the containers write to"
                f" stdout and stderr into their logs, burnt {engine:.3f} ms of CPU per request besides."
            )
        say(f"**docker vs netns {title}**: {r:.2f}x.{measured}{why_text}")


def _why_caching(rows: list[dict], say) -> None:
    for mode in ("floor", "netns", "docker"):
        cached, orders = find(rows, mode, "gateway", "products"), find(rows, mode, "gateway", "orders")
        r = ratio(median_rps(cached), median_rps(orders))
        if r is None:
            continue
        redis, pg = cpu_ms_per_request(cached, "redis"), cpu_ms_per_request(orders, "postgres")
        say(f"**Caching ({mode})**: a cached GET (Redis hit answered before Flask) is {r:.1f}x the rate of "
            "an order (one PostgreSQL transaction, then a cache invalidation)"
            + (f"; Redis {redis:.3f} ms CPU per cached GET" if redis is not None else "")
            + (f", PostgreSQL {pg:.2f} ms per order" if pg is not None else "") + ".")  # fmt: skip


def why(rows: list[dict], notes: dict | None = None) -> list[str]:
    out: list[str] = []

    def say(text: str) -> None:
        out.append(f"- {text}")

    _why_gateway(rows, say)
    _why_docker(rows, notes, say)
    _why_caching(rows, say)
    if not out:
        out.append("- Not enough cases ran to compare paths (a QUICK run measures only a few).")
    out.append(
        "- The design document's 54 vs 29 req/s with ~0.9-1.7 s mean latency at ~50 concurrent "
        "clients (Little's law: 54 x 0.924 ≈ 50) cannot come from the network path: a veth hop or "
        "docker-proxy costs microseconds to a fraction of a millisecond per request (above). Numbers "
        "that low point at the application (no connection reuse, a new upstream connection per "
        "request, sync workers, per-request DB connections), not at namespaces vs Docker."
    )
    return out


def profile_lines(report: dict) -> list[str]:
    prof = report.get("profile")
    if not prof:
        return ["Not profiled in this run (`bench_profile: true` runs py-spy against the loopback gateway)."]
    if prof.get("error"):
        return [f"py-spy failed: {prof['error']}"]
    lines = [f"`{shlex.join(prof['command'])}` while `{shlex.join(prof['load'])}` ran "
             f"({prof['samples']:,} samples, every gateway process).", "",
             _row(["top frames by own samples", "%", "", "top frames including callees", "%"]),
             _row(["---"] * 5)]  # fmt: skip
    for own, inc in zip(prof["self"], prof["inclusive"], strict=False):
        lines.append(f"| `{own['frame']}` | {own['percent']} | | `{inc['frame']}` | {inc['percent']} |")
    if prof.get("areas"):
        lines += ["", "Where the gateway's CPU goes (own samples by area): "
                  + "; ".join(f"{a['frame']} {a['percent']} %" for a in prof["areas"]) + "."]  # fmt: skip
    return lines


def targets_table(plan: dict, skipped: list[dict]) -> list[str]:
    lines = [
        _row(["target", "GET /api/products… at", "POST /api/orders at", "load sent from"]),
        _row(["---"] * 4),
    ]
    for t in plan.get("targets", []):
        where = shlex.join(t.get("prefix", [])) or "this host"
        lines.append(_row([t["name"], t["products_url"], t["orders_url"], f"`{where}`"]))
    for miss in [s for s in skipped if "endpoint" not in s]:
        lines.append(_row([miss["target"], "not measured", miss["why"], ""]))
    return lines


def cleanup_lines(report: dict) -> list[str]:
    """What the run deleted and put back in each lab (cleanup.py); a line per lab."""
    from shoplab_bench.cleanup import summary

    results = report.get("cleanup") or {}
    lines = [f"- {summary(mode, result)}" for mode, result in results.items()]
    if not lines:
        lines = ["- no lab took orders in this run: nothing to delete, no stock to put back"]
    if report.get("plan", {}).get("floor", {}).get("enabled", True):
        lines.append("- floor: its PostgreSQL and Redis were the run's own and went with it")
    return lines


ALT_COLUMNS = ["stack", "path", "req/s median [min-max]", "p99 ms median [min-max]",
               "ours / it, per round", "ours / it, medians"]  # fmt: skip


def alternatives_table(rows: list[dict], plan: dict) -> list[str]:
    """The hand-written server stack (floor-gateway, floor-direct) against each kept-library alternative
    (plan `floor.variants`, services/src/shoplab/server/README.md), wrk on the cached GETs, same rounds."""
    variants = {v["name"]: v.get("about", "") for v in plan.get("floor", {}).get("variants", [])}
    if not variants:
        return []
    lines = ["## Server stack: ours against the kept libraries", "",
             "Each alternative runs a floor of its own (Redis, PostgreSQL, registry, 2 product, 2 order, "
             "gateway), measured in the same rounds as `floor-gateway` / `floor-direct`. A hand-written part "
             "stays only where ours serves >= 1.10x the best alternative at the same p99.", ""]  # fmt: skip
    for endpoint in ("products", "product"):
        for ours_path, alt_path, label in (("gateway", "alt-gateway", "through the gateway"),
                                           ("direct", "alt-direct", "product instance alone")):  # fmt: skip
            ours = find(rows, "floor", ours_path, endpoint)
            alts = [
                r for r in rows if r["path"] == alt_path and r["endpoint"] == endpoint and r["tool"] == "wrk"
            ]
            if not ours or not alts:
                continue
            lines += [
                f"### {DESIGN_KEYS[endpoint]}, {label}",
                "",
                _row(ALT_COLUMNS),
                _row(["---"] * len(ALT_COLUMNS)),
            ]
            p99 = lambda r: r["latency_ms"]["p99"]  # noqa: E731
            lines.append(_row(["ours (hand-written)", ours["target"], _range(ours["rps"]),
                               _range(p99(ours), "{:.1f}"), "", ""]))  # fmt: skip
            for alt in alts:
                name = alt["target"].split("-", 2)[2]
                per_round = ", ".join(f"{x:.2f}" for x in round_ratios(ours, alt))
                medians = ratio(median_rps(ours), median_rps(alt))
                lines.append(_row([f"{name}: {variants.get(name, '')}", alt["target"], _range(alt["rps"]),
                                   _range(p99(alt), "{:.1f}"), per_round,
                                   f"{medians:.2f}" if medians else "-"]))  # fmt: skip
            lines.append("")
    return lines


def render_markdown(report: dict) -> str:
    rows = aggregate(report["cases"])
    env = report.get("environment", {})
    plan = report.get("plan", {})
    checks = check_targets(rows)
    lines = [f"# Shoplab benchmark {report['started'][:19]}Z", "",
             f"Kernel {env.get('kernel')}, {env.get('cpus')} x {env.get('cpu_model')}, load average at start "
             f"{' '.join(env.get('loadavg_start', []))}; commit `{env.get('commit', '')[:12]}`"
             f"{' (with local changes)' if env.get('commit_dirty') else ''}. {env.get('note', '')}",
             f"Rounds: {plan.get('rounds')} (cases interleaved A B C ... A B C ...); medians [min-max] over "
             "rounds (over the rounds without non-2xx or socket errors when there are any). `machine_busy` "
             "in report.json: the share of all CPUs busy during each case (other jobs included).", "",
             "## Targets (reported, not asserted)", "", _row(["target", "measured", "met"]),
             _row(["---"] * 3)]  # fmt: skip
    lines += [f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |" for c in checks]
    load = env.get("loadavg_start") or []
    if load and env.get("cpus") and float(load[0]) > env["cpus"]:
        lines += ["", f"**Busy machine**: the load average was {load[0]} on {env['cpus']} CPUs at the start "
                  "(other jobs were running): every figure here is a lower bound. Measure again on a quiet "
                  "machine before comparing with the targets."]  # fmt: skip
    lines += ["", "## The design document's table, with ours beside it", "",
              *design_doc_table(rows, plan), "",
              *across_hosts_table(rows, plan, report.get("across_hosts")),
              *alternatives_table(rows, plan),
              "## Why (computed from the numbers above)", "", *why(rows, plan.get("notes")), "",
              "## Targets measured", "", *targets_table(plan, report.get("skipped", [])), "",
              "## Every case", "", *case_table(rows),
              "## Profile of the gateway", "", *profile_lines(report), "",
              "## Lab data left behind", "", *cleanup_lines(report), "",
              "## Tools and command lines", ""]  # fmt: skip
    for host, versions in env.get("tool_versions", {}).items():
        lines.append(f"- load host `{host}`: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    seen = set()
    for row in rows:
        key = (row["target"], row["endpoint"], row["tool"])
        if key not in seen:
            seen.add(key)
            lines.append(f"- {row['target']} {row['endpoint']} {row['tool']}: `{shlex.join(row['command'])}`")
    if report.get("skipped"):
        lines += ["", f"Skipped (time budget): {len(report['skipped'])} cases."]
    return "\n".join(lines) + "\n"


def render_all(report: dict, out_dir: Path) -> list[Path]:
    from shoplab_bench.chart import render_chart

    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(render_markdown(report))
    paths = [out_dir / "report.json", md]
    if not (out_dir / "report.json").exists():
        (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    chart = render_chart(aggregate(report["cases"]), out_dir / "chart.png")
    if chart:
        paths.append(chart)
    return paths
