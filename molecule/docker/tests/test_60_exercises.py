"""Every docker exercise, as a student meets it and as CI proves it (the exercises scenario does the same
for netns): the break takes for the intended reason, `make check` fails naming the intended first
failing check, the reference solution turns every check green (the flow matrix included), a reset
leaves the clean lab, and the status report then finds no problem.

Runs after the operations tests (the lab has the topology's counts again) and before test_90_absent.
"""

from __future__ import annotations

import pytest
from exercisetest import ExerciseRun, in_mode
from labhost import LAB
from labtest import tail

# The lab host's inventory name, under which the grader keeps its results: localhost, or the lab VM.
HOST = LAB.name


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> ExerciseRun:
    # The project's inventory for this machine, the scenario's for a lab VM (LAB.inventory).
    return ExerciseRun("docker", tmp_path_factory.mktemp("exercise-results"), LAB.inventory)


@pytest.mark.parametrize("exercise", in_mode("docker"), ids=lambda e: e["name"])
def test_break_check_solve_reset(run, exercise):
    name = exercise["name"]
    started = run.action("start", "-e", f"exercise={name}")
    assert started.returncode == 0, tail(started)
    assert f"Exercise {name}: {exercise['title']}" in started.stdout

    checked = run.action("check")
    assert checked.returncode != 0, "make check must fail while the lab is broken"
    broken = run.latest(HOST, name)
    assert broken["first_failure"] == exercise["breaks"][0], broken["lines"]
    assert set(exercise["breaks"]) <= {c["name"] for c in broken["checks"] if not c["ok"]}
    assert f"FAIL {exercise['breaks'][0]}: " in checked.stdout

    solved = run.action("solve")
    assert solved.returncode == 0, tail(solved)
    repaired = run.latest(HOST, name)
    assert repaired["failed"] == 0, [line for line in repaired["lines"] if line.startswith("FAIL")]
    flows = [c for c in repaired["checks"] if c["name"].startswith("flow-")]
    assert any(c["must_fail"] for c in flows) and all(c["ok"] for c in flows)

    reset = run.action("reset")
    assert reset.returncode == 0, tail(reset)


def test_the_lab_is_clean_after_every_exercise(run):
    checked = run.action("check")
    assert checked.returncode == 0, tail(checked)
    assert " checks pass." in checked.stdout
    status = run.playbook("playbooks/status.yml", "-e", "lab_status_fail_on_problems=true")
    assert status.returncode == 0, tail(status)
