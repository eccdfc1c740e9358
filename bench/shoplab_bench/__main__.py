"""python -m shoplab_bench run PLAN.json OUT_DIR | render OUT_DIR/report.json"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoplab_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a plan and render its report")
    run.add_argument("plan", type=Path)
    run.add_argument("out_dir", type=Path)
    render = sub.add_parser("render", help="render report.md and chart.png from a report.json")
    render.add_argument("report", type=Path)
    args = parser.parse_args(argv)

    from shoplab_bench.report import render_all

    if args.command == "run":
        from shoplab_bench.runner import run_plan

        plan = json.loads(args.plan.read_text())
        report = run_plan(plan, args.out_dir, log=lambda m: print(m, flush=True))
        paths = render_all(report, args.out_dir)
    else:
        paths = render_all(json.loads(args.report.read_text()), args.report.parent)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
