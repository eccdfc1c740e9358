"""A lab over several VMs measured beside a lab of one VM (shoplab_bench.acrosshosts): which earlier run is
the reference, and the report's section, from recorded tool outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shoplab_bench import acrosshosts, report, summary
from shoplab_bench.parse import PARSERS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def case(endpoint: str, tool: str, fixture: str, mode: str = "netns") -> dict:
    result = PARSERS[tool]((FIXTURES / fixture).read_text())
    return {"target": f"vm-{mode}-published", "mode": mode, "path": "published", "endpoint": endpoint,
            "tool": tool, "round": 1, "command": [tool, "http://192.168.150.11:8080/"], "ok": True,
            "result": result, "cpu_s": {}, "machine_busy": 0.5}  # fmt: skip


def plan(lab_hosts: int, mode: str = "netns", **more) -> dict:
    url = "http://192.168.150.11:8080"
    target = {"name": f"vm-{mode}-published", "mode": mode, "scope": "vm", "path": "published",
              "products_url": url, "orders_url": url}  # fmt: skip
    return {"lab_hosts": lab_hosts, "targets": [target], **more}


def write_run(folder: Path, name: str, lab_hosts: int, cases: list[dict], mode: str = "netns") -> Path:
    path = folder / name / "report.json"
    path.parent.mkdir(parents=True)
    started = f"{name[:4]}-{name[4:6]}-{name[6:8]}T{name[9:11]}:00:00+00:00"
    document = {"started": started, "plan": plan(lab_hosts, mode), "cases": cases,
                "environment": {"commit": "0123456789abcdef"}}  # fmt: skip
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def results(tmp_path):
    """A results folder: an old and a newer run on one VM (netns), then newer runs the reference is not:
    one over three VMs, one of docker mode, one that measured nothing."""
    one_vm = [case("products", "wrk", "wrk_get_products.txt"), case("orders", "wrk", "wrk_post_orders.txt")]
    write_run(tmp_path, "20261201T010000Z", 1, one_vm)
    newest = write_run(tmp_path, "20261202T010000Z", 1, one_vm)
    write_run(tmp_path, "20261203T010000Z", 3, one_vm)
    write_run(
        tmp_path, "20261204T010000Z", 1, [case("products", "wrk", "wrk_get_products.txt", "docker")], "docker"
    )
    write_run(tmp_path, "20261205T010000Z", 1, [])
    return tmp_path, newest


def test_the_reference_is_the_newest_run_of_one_vm_in_the_same_mode(results):
    folder, newest = results
    assert acrosshosts.find_reference(plan(3, results_dir=str(folder))) == newest


def test_a_reference_given_by_folder_wins(results):
    folder, _ = results
    given = folder / "20261201T010000Z"
    assert (
        acrosshosts.find_reference(plan(3, results_dir=str(folder), reference=str(given)))
        == given / "report.json"
    )


def test_no_run_of_one_vm_means_no_reference(tmp_path):
    assert acrosshosts.reference(plan(3, results_dir=str(tmp_path))) is None


def test_the_section_sets_each_case_beside_the_one_vm_figures(results):
    folder, newest = results
    this_plan = plan(3, results_dir=str(folder))
    # This run over three VMs: the products case answered at the orders fixture's speed.
    cases = [case("products", "wrk", "wrk_post_orders.txt"), case("orders", "wrk", "wrk_post_orders.txt")]
    rows = summary.aggregate(cases)
    ref = acrosshosts.reference(this_plan)
    assert ref["path"] == str(newest) and ref["commit"] == "0123456789abcdef"
    lines = acrosshosts.table(rows, this_plan, ref)
    assert lines[0] == "## Across hosts: this lab over 3 VMs beside a lab of one VM"
    products = next(line for line in lines if line.startswith("| products | wrk |"))
    one = summary.aggregate([case("products", "wrk", "wrk_get_products.txt")])[0]
    ours = rows[0]
    cells = [c.strip() for c in products.strip("|").split("|")]
    assert cells[2] == f"{one['rps']['median']:,.0f}" and cells[3] == f"{ours['rps']['median']:,.0f}"
    assert cells[4] == f"{ours['rps']['median'] / one['rps']['median']:.2f}"
    added = ours["latency_ms"]["p50"]["median"] - one["latency_ms"]["p50"]["median"]
    assert cells[7] == f"{added:+.1f}"
    # The same case on both: the ratio is 1 and nothing is added.
    orders = next(line for line in lines if line.startswith("| orders | wrk |"))
    assert [c.strip() for c in orders.strip("|").split("|")][4] == "1.00"
    assert "| +0.0 |" in orders


def test_without_a_reference_the_section_says_how_to_make_one(tmp_path):
    lines = acrosshosts.table([], plan(3, results_dir=str(tmp_path)), None)
    assert "make bench LAB=vm" in lines[2] and "bench_vm_reference" in lines[2]


def test_a_lab_of_one_vm_has_no_such_section(results):
    folder, _ = results
    document = {"started": "2026-12-06T00:00:00+00:00", "plan": plan(1, results_dir=str(folder)),
                "cases": [case("products", "wrk", "wrk_get_products.txt")], "environment": {}}  # fmt: skip
    assert "Across hosts" not in report.render_markdown(document)
    document["plan"]["lab_hosts"] = 3
    document["across_hosts"] = acrosshosts.reference(document["plan"])
    assert "## Across hosts: this lab over 3 VMs beside a lab of one VM" in report.render_markdown(document)
