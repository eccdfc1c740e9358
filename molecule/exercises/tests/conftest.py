"""Fixtures for the exercises scenario: the class's lab hosts and where the grader keeps results."""

from __future__ import annotations

import pytest
from exercisetest import ExerciseRun, inventory_dir

STUDENTS = ["student-1", "student-2"]


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> ExerciseRun:
    return ExerciseRun("netns", tmp_path_factory.mktemp("exercise-results"), inventory_dir())
