"""Every netns exercise, as a student meets it and as CI proves it: the break takes for the intended
reason (start checks it), `make check` fails naming the intended first failing check, the reference
solution turns every check green (the whole flow matrix, must-fail cells included), and a reset leaves
the clean lab. The exercises are played on both lab hosts side by side (see `outcomes`)."""

from __future__ import annotations

import queue
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from conftest import STUDENTS
from exercisetest import ExerciseRun, in_mode
from labtest import tail

HOST = STUDENTS[0]
EXERCISES = in_mode("netns")


@dataclass
class Outcome:
    """One exercise played through on one lab host: each action's run and the grader's two results."""

    host: str
    started: subprocess.CompletedProcess
    checked: subprocess.CompletedProcess | None = None
    broken: dict | None = None
    solved: subprocess.CompletedProcess | None = None
    repaired: dict | None = None
    reset: subprocess.CompletedProcess | None = None


def newest(run: ExerciseRun, host: str, name: str) -> dict | None:
    """The grader's newest result for host and exercise; None when it kept none (the test says so)."""
    try:
        return run.latest(host, name)
    except AssertionError:
        return None


def play(run: ExerciseRun, host: str, name: str) -> Outcome:
    """start, check, solve, reset: as far as each step succeeds (the test says which one did not)."""
    outcome = Outcome(host, run.action("start", "-e", f"exercise={name}", host=host))
    if outcome.started.returncode == 0:
        outcome.checked = run.action("check", host=host)
        outcome.broken = newest(run, host, name)
        outcome.solved = run.action("solve", host=host)
        outcome.repaired = newest(run, host, name)
    outcome.reset = run.action("reset", host=host)
    return outcome


@pytest.fixture(scope="module")
def outcomes(run) -> dict[str, Outcome]:
    """Every netns exercise, played on both lab hosts side by side: each host takes the next exercise
    when it is done with one (the state of an exercise lives on its lab host; about half the time of
    one host). An exercise that edits the controller's topology data (a design exercise) would change
    what the other host's runs read: those run afterwards, alone."""
    shared = [e["name"] for e in EXERCISES if "topology" not in e]
    alone = [e["name"] for e in EXERCISES if "topology" in e]
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in shared:
        todo.put(name)
    done: dict[str, Outcome] = {}

    def work(host: str) -> None:
        while True:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            done[name] = play(run, host, name)

    with ThreadPoolExecutor(max_workers=len(STUDENTS)) as pool:
        list(pool.map(work, STUDENTS))
    for name in alone:
        done[name] = play(run, HOST, name)
    return done


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e["name"])
def test_break_check_solve_reset(outcomes, exercise):
    name = exercise["name"]
    outcome = outcomes[name]
    assert outcome.started.returncode == 0, tail(outcome.started)
    assert f"Exercise {name}: {exercise['title']}" in outcome.started.stdout
    assert "`make check` grades your fix" in outcome.started.stdout

    checked, broken = outcome.checked, outcome.broken
    assert checked.returncode != 0, "make check must fail while the lab is broken"
    assert broken is not None, f"the grader kept no result on {outcome.host}: {tail(checked)}"
    assert broken["first_failure"] == exercise["breaks"][0], broken["lines"]
    failing = {c["name"] for c in broken["checks"] if not c["ok"]}
    assert set(exercise["breaks"]) <= failing
    assert f"FAIL {exercise['breaks'][0]}: " in checked.stdout
    assert f"{broken['passed']} passed, {broken['failed']} failed" in checked.stdout

    assert outcome.solved.returncode == 0, tail(outcome.solved)
    repaired = outcome.repaired
    assert repaired is not None, f"the grader kept no result on {outcome.host}: {tail(outcome.solved)}"
    assert repaired["failed"] == 0, [line for line in repaired["lines"] if line.startswith("FAIL")]
    flows = [c for c in repaired["checks"] if c["name"].startswith("flow-")]
    assert any(c["must_fail"] for c in flows) and all(c["ok"] for c in flows)
    if not exercise["redeploy_allowed"]:
        assert "repaired-not-redeployed" in {c["name"] for c in repaired["checks"]}

    assert outcome.reset.returncode == 0, tail(outcome.reset)


def test_hints_come_in_order_and_are_counted(run):
    exercise = in_mode("netns")[0]
    assert run.action("start", "-e", f"exercise={exercise['name']}", host=HOST).returncode == 0
    for index, hint in enumerate(exercise["hints"][:2], start=1):
        shown = run.action("hint", host=HOST)
        assert shown.returncode == 0, tail(shown)
        assert f"Hint {index} of {len(exercise['hints'])}: {' '.join(hint.split())}" in shown.stdout
    run.action("check", host=HOST)
    assert run.latest(HOST, exercise["name"])["hints_shown"] == 2
    assert run.action("reset", host=HOST).returncode == 0


def test_a_redeploy_is_not_a_repair(run):
    """`make up` repairs a veth that is down, but the exercise asks for a repair by hand: the grader
    says the lab was redeployed."""
    exercise = next(e for e in in_mode("netns") if e["name"] == "veth-down")
    assert not exercise["redeploy_allowed"]
    assert run.action("start", "-e", "exercise=veth-down", host=HOST).returncode == 0
    redeployed = run.playbook("site.yml", "--limit", HOST)
    assert redeployed.returncode == 0, tail(redeployed)
    assert run.action("check", host=HOST).returncode != 0
    result = run.latest(HOST, "veth-down")
    assert result["first_failure"] == "repaired-not-redeployed", result["lines"]
    assert [c["name"] for c in result["checks"] if not c["ok"]] == ["repaired-not-redeployed"]
    assert "redeployed, not repaired" in result["checks"][-1]["observed"]
    assert run.action("reset", host=HOST).returncode == 0


def test_starting_an_unknown_exercise_is_refused_before_anything_changes(run):
    refused = run.action("start", "-e", "exercise=no-such-exercise", host=HOST)
    assert refused.returncode != 0
    assert "no-such-exercise/exercise.yml: missing" in refused.stdout
    assert "changed=0" in refused.stdout
