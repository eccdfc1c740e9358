"""Grading a class: every host of group `students` in parallel into one CSV and a summary, one student
still broken, the other solved with a hint."""

from __future__ import annotations

import csv

from conftest import STUDENTS
from exercisetest import in_mode
from labtest import tail

EXERCISE = next(e for e in in_mode("netns") if e["name"] == "order-postgres-drop")


def test_the_class_report_has_a_row_per_student(run):
    broken, solved = STUDENTS
    name = EXERCISE["name"]
    for host in STUDENTS:
        started = run.action("start", "-e", f"exercise={name}", host=host)
        assert started.returncode == 0, tail(started)
    assert run.action("hint", host=solved).returncode == 0
    assert run.action("solve", host=solved).returncode == 0

    graded = run.playbook("playbooks/grade_class.yml", "-e", f"exercise={name}")
    assert graded.returncode == 0, tail(graded)
    reports = sorted((run.results / "class" / name).glob("*/class.csv"))
    assert reports, tail(graded)
    rows = {row["host"]: row for row in csv.DictReader(reports[-1].open())}
    assert set(rows) == set(STUDENTS)
    assert int(rows[broken]["failed"]) > 0
    assert rows[broken]["first_failing_check"] == EXERCISE["breaks"][0]
    assert rows[broken]["hints_used"] == "0"
    assert rows[solved]["failed"] == "0" and rows[solved]["first_failing_check"] == ""
    assert rows[solved]["hints_used"] == "1"
    assert int(rows[solved]["passed"]) == int(rows[solved]["total"]) > 50
    summary = (reports[-1].parent / "summary.md").read_text()
    assert "1 of 2 lab hosts pass every check" in summary
    assert f"| {broken} | not yet |" in summary

    for host in STUDENTS:
        assert run.action("reset", host=host).returncode == 0


def test_a_class_grading_without_an_exercise_is_refused(run):
    refused = run.playbook("playbooks/grade_class.yml")
    assert refused.returncode != 0
    assert "exercise: name the exercise to grade" in refused.stdout
