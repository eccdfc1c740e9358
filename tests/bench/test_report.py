"""report.md and chart.png rendered from recorded tool outputs (fixtures), one record per case."""

from __future__ import annotations

from pathlib import Path

import pytest
from shoplab_bench import report, summary
from shoplab_bench.parse import PARSERS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def record(target, endpoint, tool, fixture, *, round_no=1, cpu=None, switches=None):
    mode, path = target.split("-", 1)
    result = PARSERS[tool.split()[0]]((FIXTURES / fixture).read_text())
    return {
        "target": target, "mode": mode, "path": path, "endpoint": endpoint, "tool": tool, "round": round_no,
        "command": [tool.split()[0], "http://example.invalid/"], "wall_s": result["duration_s"],
        "load_tool_cpu_s": 0.5, "machine_busy": 0.9, "ok": True, "result": result,
        "cpu_s": cpu or {mode: {"gateway": 1.5, "product": 1.2, "redis": 0.1},
                         "engine": {"docker-proxy": 0.4}},
        "switches": {"seconds": result["duration_s"], "counts": switches} if switches else None,
    }  # fmt: skip


@pytest.fixture
def sample():
    cases = [
        record("netns-gateway", "products", "wrk", "wrk_get_products.txt"),
        record("netns-gateway", "products", "wrk", "wrk_post_orders.txt", round_no=2),
        record("netns-gateway", "products", "wrk", "wrk_non2xx.txt", round_no=3),
        record("netns-direct", "products", "wrk", "wrk_get_products.txt"),
        record("netns-gateway", "products", "ab", "ab_get_products.txt"),
        record("docker-published", "products", "ab", "ab_non2xx.txt"),
        record("docker-published", "products", "wrk", "wrk_get_products.txt"),
        record("docker-gateway", "products", "wrk", "wrk_post_orders.txt"),
        record("netns-gateway", "orders", "wrk", "wrk_post_orders.txt"),
        record("floor-nginx", "products", "hey", "hey_get_products.txt"),
    ]  # fmt: skip
    return {"started": "2026-11-25T01:00:00+00:00", "plan": {"rounds": 2}, "cases": cases,
            "environment": {"kernel": "6.1", "cpus": 2, "cpu_model": "test", "commit": "abc"}}  # fmt: skip


def test_medians_with_min_and_max(sample):
    rows = summary.aggregate(sample["cases"])
    row = summary.find(rows, "netns", "gateway", "products")
    assert row["runs"] == 3
    assert row["rps"]["min"] == pytest.approx(598.81)
    assert row["rps"]["max"] == pytest.approx(1199.60)
    assert row["rps"]["median"] == pytest.approx((598.81 + 1199.60) / 2)


def test_a_run_that_answered_errors_is_counted_but_not_timed(sample):
    rows = summary.aggregate(sample["cases"])
    row = summary.find(rows, "netns", "gateway", "products")
    # Round 3 (wrk_non2xx.txt: 679 non-2xx at 673 req/s) is a failure, not a speed.
    assert row["clean_runs"] == 2
    assert row["rps"]["min"] == pytest.approx(598.81)
    assert row["non_2xx"] == 679
    assert row["requests"] == 3696 + 1827 + 679


def test_targets_are_reported_not_met(sample):
    checks = {c["target"]: c for c in summary.check_targets(summary.aggregate(sample["cases"]))}
    gateway = checks["netns gateway: cached GET /api/products ≥ 2,000 req/s, p99 ≤ 50 ms"]
    assert gateway["met"] is False
    assert checks["netns gateway: POST /api/orders ≥ 500 req/s"]["met"] is True
    non_2xx = checks["0 non-2xx responses (and no socket errors) in every run"]
    assert not non_2xx["met"]
    assert "679 non-2xx" in non_2xx["measured"]


def test_markdown_has_the_design_documents_table_beside_ours(sample):
    md = report.render_markdown(sample)
    doc_row = next(line for line in md.splitlines() if line.startswith("| Linux namespaces"))
    assert "54.07 req/s, mean 924 ms" in doc_row
    assert "705 req/s, mean 70.9 ms" in doc_row  # ours: ab without keep-alive, from the fixture
    docker_row = next(line for line in md.splitlines() if line.startswith("| Docker (published port"))
    assert "29.21 req/s, mean 1711 ms" in docker_row
    assert "| netns-gateway | wrk | 899 [599-1,200] |" in md


def test_the_netns_gateway_address_comes_from_the_plan(sample):
    """roles/bench renders the targets' URLs from the topology; the report names the one measured."""
    assert "| Linux namespaces (gateway) |" in report.render_markdown(sample)
    sample["plan"]["targets"] = [
        {"name": "netns-direct", "products_url": "http://192.0.2.20:5999", "orders_url": "", "prefix": []},
        {"name": "netns-gateway", "products_url": "http://192.0.2.10:3999", "orders_url": "", "prefix": []},
    ]
    assert "| Linux namespaces (gateway 192.0.2.10:3999) |" in report.render_markdown(sample)


def test_why_is_computed_from_the_numbers(sample):
    lines = report.why(summary.aggregate(sample["cases"]))
    hop = next(line for line in lines if "Gateway hop (netns)" in line)
    # gw median (598.81 + 1199.60) / 2 = 899.2 against direct 1199.60: 25 % overhead.
    assert "25 %" in hop
    proxy = next(line for line in lines if "docker-proxy" in line)
    assert "of the throughput of the container address" in proxy


def _gateway_cases(netns_switches: dict, docker_switches: dict) -> list[dict]:
    return [
        record("netns-gateway", "products", "wrk", "wrk_get_products.txt", switches=netns_switches),
        record("docker-gateway", "products", "wrk", "wrk_post_orders.txt", switches=docker_switches),
    ]


def test_context_switches_per_request_and_what_they_explain():
    # 3696 requests in netns, 1827 in docker (the fixtures); gateway + product switches per request.
    cases = _gateway_cases(
        {"netns": {"gateway": 3696 * 2, "product": 3696 * 2}},
        {"docker": {"gateway": 1827 * 4, "product": 1827 * 5}, "netns": {"gateway": 10**6}},
    )
    rows = summary.aggregate(cases)
    assert summary.find(rows, "netns", "gateway", "products")["switches_per_request"] == {
        "gateway": 2.0, "product": 2.0}  # fmt: skip
    # Only the run's own mode counts (the netns scope seen during a docker case is another stack).
    assert summary.find(rows, "docker", "gateway", "products")["switches_per_request"] == {
        "gateway": 4.0, "product": 5.0}  # fmt: skip
    line = next(line for line in report.why(rows) if "docker vs netns (no userland proxy)" in line)
    assert "switched context 9.0 times in docker vs 4.0 in netns" in line
    assert "Ruled out by hand" in line and "a CPU cgroup per container" in line


def test_no_cgroup_explanation_when_docker_is_not_slower():
    # Docker switching more per request but serving more than netns: the cgroups do not explain a gap.
    netns_switches, docker_switches = {"netns": {"gateway": 1827 * 4}}, {"docker": {"gateway": 3696 * 9}}
    cases = [
        record("netns-gateway", "products", "wrk", "wrk_post_orders.txt", switches=netns_switches),
        record("docker-gateway", "products", "wrk", "wrk_get_products.txt", switches=docker_switches),
    ]
    line = next(line for line in report.why(summary.aggregate(cases)) if "docker vs netns" in line)
    assert "2.00x" in line
    assert "9.0 times in docker vs 4.0 in netns" in line
    assert "cgroup" not in line


def test_no_cgroup_explanation_when_docker_is_slower_only_within_the_noise():
    rows = summary.aggregate(
        _gateway_cases({"netns": {"gateway": 3696 * 3}}, {"docker": {"gateway": 1827 * 9}})
    )
    netns, docker = (
        summary.find(rows, "netns", "gateway", "products"),
        summary.find(rows, "docker", "gateway", "products"),
    )
    docker["rps"]["median"] = netns["rps"]["median"] * 0.99  # 1 % slower: rounds differ more than that
    line = next(line for line in report.why(rows) if "docker vs netns (no userland proxy)" in line)
    assert "0.99x" in line and "9.0 times in docker vs 3.0 in netns" in line
    assert "cgroup" not in line
    docker["rps"]["median"] = netns["rps"]["median"] * 0.9
    line = next(line for line in report.why(rows) if "docker vs netns (no userland proxy)" in line)
    assert "Ruled out by hand" in line and "a CPU cgroup per container" in line


def test_no_cgroup_explanation_when_docker_does_not_switch_more():
    cases = _gateway_cases({"netns": {"gateway": 3696 * 3}}, {"docker": {"gateway": 1827 * 3}})
    line = next(line for line in report.why(summary.aggregate(cases)) if "docker vs netns" in line)
    assert "3.0 times in docker vs 3.0 in netns" in line
    assert "cgroup" not in line


def test_cpu_per_request(sample):
    rows = summary.aggregate(sample["cases"])
    row = summary.find(rows, "docker", "published", "products")
    # 0.4 s of docker-proxy CPU in 3.08 s of wrk = 13 % of a core, at 1199.6 req/s.
    assert summary.cpu_ms_per_request(row, "docker-proxy") == pytest.approx(10 * 13.0 / 1199.6, rel=0.01)


def test_chart_is_a_png(sample, tmp_path):
    paths = report.render_all(sample, tmp_path)
    chart = tmp_path / "chart.png"
    assert chart in paths
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000
    assert (tmp_path / "report.md").read_text().startswith("# Shoplab benchmark")


def test_profile_summary_by_area():
    from shoplab_bench.profile import summarize

    collapsed = (
        "process 1;Thread.run (threading.py:10);handle (gunicorn/workers/gthread.py:5);"
        "log_request (shoplab/core/logs.py:20) 30\n"
        "process 1;Thread.run (threading.py:10);handle (gunicorn/workers/gthread.py:5);"
        "_read_head (shoplab/server/upstream.py:40) 70\n"
    )
    prof = summarize(collapsed)
    assert prof["samples"] == 100
    assert prof["self"][0] == {
        "frame": "_read_head (shoplab/server/upstream.py)",
        "samples": 70,
        "percent": 70.0,
    }
    areas = {a["frame"]: a["percent"] for a in prof["areas"]}
    assert areas == {
        "our proxy (upstream client, balancer)": 70.0,
        "logging (buffered JSON access lines)": 30.0,
    }
    # Thread plumbing is in every stack: left out of the inclusive table.
    assert all("threading.py" not in f["frame"] for f in prof["inclusive"])


def test_the_engines_log_pipeline_is_counted_when_docker_is_slower():
    cases = _gateway_cases({"netns": {"gateway": 3696 * 3}}, {"docker": {"gateway": 1827 * 3}})
    cases[1]["cpu_s"]["engine"] = {"dockerd": 0.2, "containerd": 0.05}
    line = next(line for line in report.why(summary.aggregate(cases)) if "docker vs netns" in line)
    assert "0.50x" in line and "Docker's engine (dockerd, containerd)" in line
    engine_ms = float(line.split("burnt ")[-1].split(" ms")[0])
    assert engine_ms > 0
    # Docker not slower: nothing to explain.
    cases = _gateway_cases({"netns": {"gateway": 3696 * 3}}, {"docker": {"gateway": 1827 * 3}})
    cases[1], cases[0] = (
        record("docker-gateway", "products", "wrk", "wrk_get_products.txt"),
        record("netns-gateway", "products", "wrk", "wrk_post_orders.txt"),
    )
    cases[1]["cpu_s"]["engine"] = {"dockerd": 0.2}
    line = next(line for line in report.why(summary.aggregate(cases)) if "docker vs netns" in line)
    assert "2.00x" in line and "engine" not in line


def test_ratio_targets_show_each_rounds_pair_beside_the_ratio_of_medians():
    # Round 2 is slow for both sides (a busy machine): the pairs stay near 1, the medians mix rounds.
    cases = [
        record("netns-gateway", "products", "wrk", "wrk_get_products.txt", round_no=1),
        record("docker-gateway", "products", "wrk", "wrk_get_products.txt", round_no=1),
        record("netns-gateway", "products", "wrk", "wrk_post_orders.txt", round_no=2),
        record("docker-gateway", "products", "wrk", "wrk_post_orders.txt", round_no=2),
        record("docker-gateway", "products", "wrk", "wrk_post_orders.txt", round_no=3),
    ]  # fmt: skip
    rows = summary.aggregate(cases)
    docker, netns = (summary.find(rows, mode, "gateway", "products") for mode in ("docker", "netns"))
    assert summary.round_ratios(docker, netns) == [pytest.approx(1.0), pytest.approx(1.0)]
    check = next(c for c in summary.check_targets(rows) if c["target"].startswith("docker without"))
    # Ratio of medians: docker's median is round 2's rate (3 runs), netns's the mean of rounds 1 and 2.
    assert check["measured"].endswith("(per round 1.00, 1.00)")
    assert check["met"] is False


def test_the_server_stack_table_sets_ours_beside_each_alternative():
    cases = [
        record("floor-gateway", "products", "wrk", "wrk_get_products.txt"),
        record("floor-alt-gateway", "products", "wrk", "wrk_post_orders.txt"),
    ]  # fmt: skip
    cases[1]["target"] = "floor-gateway-gthread"
    rows = summary.aggregate(cases)
    plan = {"floor": {"variants": [{"name": "gthread", "about": "gunicorn gthread"}]}}
    lines = report.alternatives_table(rows, plan)
    assert any(line.startswith("| ours (hand-written) | floor-gateway |") for line in lines)
    (alt,) = [line for line in lines if "floor-gateway-gthread" in line]
    assert alt.startswith("| gthread: gunicorn gthread | floor-gateway-gthread |")
    assert report.alternatives_table(rows, {}) == []
