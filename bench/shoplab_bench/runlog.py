"""How a harness's `run PLAN FOLDER` starts: the run of `python -m shoplab_bench` and of
`python -m shoplab_drill` (which imports it from here, as it does the route guard).

Both read a JSON plan, make the run's folder, print every progress line and append it to FOLDER/run.log,
and exit 143 on SIGTERM (`timeout`, Ansible's async timeout) so that the run's `finally` blocks still
stop the load and clean up.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")


def add_run_command(sub: argparse._SubParsersAction, help_text: str, folder: str) -> None:
    """The `run PLAN FOLDER` subcommand (`folder`: what the command line calls the run's folder)."""
    run = sub.add_parser("run", help=help_text)
    run.add_argument("plan", type=Path)
    run.add_argument(folder, type=Path)


def run_logged(
    plan_path: Path,
    folder: Path,
    run: Callable[..., Result],
    *,
    stamp: bool = False,
) -> Result:
    """`run(plan, folder, log=log)`, the plan read from `plan_path`; `stamp`: each progress line starts
    with the time (HH:MM:SS)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = json.loads(plan_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "run.log", "a", buffering=1) as progress:

        def log(message: str) -> None:
            line = f"{time.strftime('%H:%M:%S')} {message}" if stamp else message
            print(line, flush=True)
            progress.write(line + "\n")

        return run(plan, folder, log=log)
