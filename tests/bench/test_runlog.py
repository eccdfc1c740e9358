"""How both harnesses' `run PLAN FOLDER` starts (shoplab_bench.runlog: `python -m shoplab_bench run` and
`python -m shoplab_drill run`): the plan read, the folder made, progress in the terminal and in run.log,
SIGTERM an exit 143 that still runs the run's `finally`."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from shoplab_bench.runlog import add_run_command, run_logged

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_run_gets_the_plan_and_its_progress_goes_to_the_terminal_and_run_log(tmp_path, capsys):
    (tmp_path / "plan.json").write_text(json.dumps({"rounds": 3}))
    folder = tmp_path / "out" / "deeper"

    def run(plan, out, log):
        log(f"rounds {plan['rounds']}")
        log(f"into {out.name}")
        return {"done": True}

    assert run_logged(tmp_path / "plan.json", folder, run) == {"done": True}
    assert capsys.readouterr().out == "rounds 3\ninto deeper\n"
    assert (folder / "run.log").read_text() == "rounds 3\ninto deeper\n"
    # A second run appends.
    run_logged(tmp_path / "plan.json", folder, run)
    assert (folder / "run.log").read_text().count("rounds 3") == 2


def test_stamped_lines_start_with_the_time(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("{}")
    run_logged(tmp_path / "plan.json", tmp_path / "out", lambda plan, out, log: log("healed"), stamp=True)
    assert re.fullmatch(r"\d\d:\d\d:\d\d healed\n", capsys.readouterr().out)
    assert re.fullmatch(r"\d\d:\d\d:\d\d healed\n", (tmp_path / "out" / "run.log").read_text())


def test_sigterm_exits_143_and_the_run_still_cleans_up(tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    script = f"""
import time
from pathlib import Path
from shoplab_bench.runlog import run_logged
def run(plan, out, log):
    try:
        log("started")
        time.sleep(60)
    finally:
        (out / "cleaned").write_text("yes")
run_logged(Path({str(tmp_path / "plan.json")!r}), Path({str(tmp_path / "out")!r}), run)
"""
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        log = tmp_path / "out" / "run.log"
        while not (log.exists() and "started" in log.read_text()):
            assert child.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 143
    finally:
        child.kill()
        child.wait()
    assert (tmp_path / "out" / "cleaned").read_text() == "yes"


def test_the_run_command_takes_a_plan_and_a_folder_named_by_its_harness():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_command(sub, "run a plan", "out_dir")
    args = parser.parse_args(["run", "plan.json", "results"])
    assert (args.command, args.plan, args.out_dir) == ("run", Path("plan.json"), Path("results"))
