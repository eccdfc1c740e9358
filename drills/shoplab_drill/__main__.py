"""python -m shoplab_drill run PLAN DIR | mark DIR EVENT | report RUN_DIR | cleanup DIR |
arm PIDFILE AFTER LOG -- HEAL... | disarm PIDFILE"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shoplab_bench.runlog import add_run_command, run_logged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoplab_drill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_command(sub, "one drill's load, check and result (started by roles/lab_drill)", "folder")
    mark = sub.add_parser(
        "mark", help="note the time of an event (fault_start, fault_on, heal_start, healed)"
    )
    mark.add_argument("folder", type=Path)
    mark.add_argument("event", choices=["fault_start", "fault_on", "heal_start", "healed"])
    report = sub.add_parser("report", help="report.md and report.json of a run's drills")
    report.add_argument("run_dir", type=Path)
    clean = sub.add_parser("cleanup", help="delete a killed drill's orders and put the stock back")
    clean.add_argument("folder", type=Path, help="the drill's folder (holds recorded.json)")
    arm = sub.add_parser(
        "arm", help="arm the dead man's switch: run HEAL after AFTER seconds unless disarmed"
    )
    arm.add_argument("pidfile", type=Path)
    arm.add_argument("after", type=float)
    arm.add_argument("log", type=Path)
    arm.add_argument("heal", nargs=argparse.REMAINDER)
    disarm = sub.add_parser("disarm", help="disarm the dead man's switch (after the heal ran)")
    disarm.add_argument("pidfile", type=Path)
    args = parser.parse_args(argv)

    if args.command == "mark":
        from shoplab_drill.runner import write_mark

        print(json.dumps(write_mark(args.folder, args.event)))
        return 0
    if args.command == "arm":
        from shoplab_drill import deadman

        heal = args.heal[1:] if args.heal[:1] == ["--"] else args.heal
        if not heal:
            parser.error("arm: no heal command after --")
        print(deadman.arm(heal, args.after, args.pidfile, args.log))
        return 0
    if args.command == "disarm":
        from shoplab_drill import deadman

        print("disarmed" if deadman.disarm(args.pidfile) else "not armed")
        return 0
    if args.command == "report":
        from shoplab_drill.report import render_run

        summary = render_run(args.run_dir)
        print(summary["text"])
        return 0 if summary["ok"] else 2
    if args.command == "cleanup":
        return cleanup(args.folder)
    return run_one(args.plan, args.folder)


def run_one(plan_path: Path, folder: Path) -> int:
    from shoplab_drill.runner import run_drill

    # SIGTERM (Ansible's async timeout) still stops the load and cleans the data up.
    result = run_logged(plan_path, folder, run_drill, stamp=True)
    return 0 if result["error"] is None else 1


def cleanup(folder: Path) -> int:
    from shoplab_bench.cleanup import Database

    from shoplab_drill import db

    saved = json.loads((folder / "recorded.json").read_text())
    counts = db.clean(Database.of(saved["mode"], saved["database"]), saved["prefix"], saved["recorded"])
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
