"""python -m shoplab_bench run PLAN.json OUT_DIR | render OUT_DIR/report.json | guard PLAN.json |
cleanup OUT_DIR"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shoplab_bench.runlog import add_run_command, run_logged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoplab_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_command(sub, "run a plan and render its report", "out_dir")
    render = sub.add_parser("render", help="render report.md and chart.png from a report.json")
    render.add_argument("report", type=Path)
    check = sub.add_parser(
        "guard", help="check the route to every target of a plan; exit 1 if one is refused"
    )
    check.add_argument("plan", type=Path)
    clean = sub.add_parser(
        "cleanup",
        help="delete a run's orders and put the stock back (a run killed before it could do so itself)",
    )
    clean.add_argument("out_dir", type=Path, help="the run's results folder (holds recorded-stock.json)")
    args = parser.parse_args(argv)

    if args.command == "guard":
        return guard_plan(json.loads(args.plan.read_text()))
    if args.command == "cleanup":
        return cleanup_run(args.out_dir)

    from shoplab_bench.report import render_all

    if args.command == "run":
        from shoplab_bench.runner import run_plan

        # `timeout` (and Ctrl-C) must still stop the floor and the nginx baselines and remove the chain.
        report = run_logged(args.plan, args.out_dir, run_plan)
        paths = render_all(report, args.out_dir)
    else:
        paths = render_all(json.loads(args.report.read_text()), args.report.parent)
    for path in paths:
        print(path)
    return 0


def cleanup_run(out_dir: Path) -> int:
    from shoplab_bench import cleanup
    from shoplab_bench.runner import Running

    run_id, recorded = cleanup.load(out_dir / cleanup.RECORDED)
    running = Running(run_id)
    running.recorded = recorded
    results = running.put_back(print)
    return 1 if any("error" in result for result in results.values()) else 0


def guard_plan(plan: dict) -> int:
    from urllib.parse import urlsplit

    from shoplab_bench import guard

    refused = []
    for target in plan.get("targets", []):
        lab = guard.Lab.of(**target["lab"])
        for url in sorted({target["products_url"], target["orders_url"]}):
            address = urlsplit(url).hostname
            try:
                route = guard.check(address, lab, target["prefix"])
                print(f"ok      {target['name']:<18} {address:<15} dev {route.device}"
                      f"{' via ' + route.via if route.via else ''}")  # fmt: skip
            except guard.RouteRefused as error:
                refused.append(f"{target['name']}: {error}")
                print(f"REFUSED {target['name']:<18} {error}")
    if refused:
        print("Refusing to benchmark: " + "; ".join(refused), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
