"""Run the exercises' playbooks as a student or an instructor would, and read the grader's results.

Shared by the scenarios that test exercises (exercises: netns on lab-host containers; docker: this host).
Each call writes its results under a folder of the test's own, never the repository's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import labtest
import shoplab_exercises
import shoplab_topology

__all__ = ["CATALOGUE", "ExerciseRun"]

_DATA = labtest.TOPOLOGY
_INSTANCES = shoplab_topology.shoplab_instances(
    _DATA["shoplab_services"], _DATA["shoplab_tiers"], shoplab_topology.default_counts(_DATA)
)
CATALOGUE = shoplab_exercises.shoplab_exercise_catalogue(
    str(labtest.PROJECT_DIR / "exercises"), _DATA["shoplab_services"], _INSTANCES, _DATA["shoplab_tiers"]
)


def in_mode(mode: str) -> list[dict]:
    return [e for e in CATALOGUE if mode in e["modes"]]


class ExerciseRun:
    """playbooks/exercise.yml (and grade_class.yml) against one scenario's lab hosts."""

    def __init__(self, mode: str, results: Path, inventory: str | None = None):
        self.mode = mode
        self.results = results
        self.inventory = inventory

    def playbook(self, path: str, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return labtest.playbook(
            path,
            self.mode,
            "-e",
            f"lab_exercise_results_dir={self.results}",
            "-e",
            f"shoplab_build_dir={labtest.PROJECT_DIR / 'build'}",
            *extra,
            inventory=self.inventory,
            timeout=timeout,
        )

    def action(self, action: str, *extra: str, host: str | None = None) -> subprocess.CompletedProcess:
        limit = ["--limit", f"{host},localhost"] if host else []
        return self.playbook("playbooks/exercise.yml", "-e", f"lab_exercise_action={action}", *limit, *extra)

    def latest(self, host: str, exercise: str) -> dict:
        """The newest result.json the grader kept for this host and exercise."""
        runs = sorted((self.results / host / exercise).glob("*/result.json"))
        assert runs, f"no result kept under {self.results / host / exercise}"
        return json.loads(runs[-1].read_text())


def inventory_dir() -> str | None:
    """The Molecule scenario's inventory folder (its host and group vars beside it), if any."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(inventory).parent) if inventory else None
