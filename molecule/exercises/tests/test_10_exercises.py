"""Every netns exercise, as a student meets it and as CI proves it: the break takes for the intended
reason (start checks it), `make check` fails naming the intended first failing check, the reference
solution turns every check green (the whole flow matrix, must-fail cells included), and a reset leaves
the clean lab."""

from __future__ import annotations

import pytest
from conftest import STUDENTS
from exercisetest import in_mode
from labtest import tail

HOST = STUDENTS[0]


@pytest.mark.parametrize("exercise", in_mode("netns"), ids=lambda e: e["name"])
def test_break_check_solve_reset(run, exercise):
    name = exercise["name"]
    started = run.action("start", "-e", f"exercise={name}", host=HOST)
    assert started.returncode == 0, tail(started)
    assert f"Exercise {name}: {exercise['title']}" in started.stdout
    assert "`make check` grades your fix" in started.stdout

    checked = run.action("check", host=HOST)
    assert checked.returncode != 0, "make check must fail while the lab is broken"
    broken = run.latest(HOST, name)
    assert broken["first_failure"] == exercise["breaks"][0], broken["lines"]
    failing = {c["name"] for c in broken["checks"] if not c["ok"]}
    assert set(exercise["breaks"]) <= failing
    assert f"FAIL {exercise['breaks'][0]}: " in checked.stdout
    assert f"{broken['passed']} passed, {broken['failed']} failed" in checked.stdout

    solved = run.action("solve", host=HOST)
    assert solved.returncode == 0, tail(solved)
    repaired = run.latest(HOST, name)
    assert repaired["failed"] == 0, [line for line in repaired["lines"] if line.startswith("FAIL")]
    flows = [c for c in repaired["checks"] if c["name"].startswith("flow-")]
    assert any(c["must_fail"] for c in flows) and all(c["ok"] for c in flows)
    if not exercise["redeploy_allowed"]:
        assert "repaired-not-redeployed" in {c["name"] for c in repaired["checks"]}

    reset = run.action("reset", host=HOST)
    assert reset.returncode == 0, tail(reset)


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
