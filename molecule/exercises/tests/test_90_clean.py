"""After every exercise, both lab hosts are the clean lab again: every baseline check passes (the shop,
every unit, every registration, the whole flow matrix) and the status report finds no problem."""

from __future__ import annotations

from labtest import tail


def test_every_lab_host_is_clean_again(run):
    checked = run.action("check")
    assert checked.returncode == 0, tail(checked)
    assert "All " in checked.stdout and " checks pass." in checked.stdout


def test_the_status_report_finds_no_problem(run):
    status = run.playbook("playbooks/status.yml", "-e", "lab_status_fail_on_problems=true")
    assert status.returncode == 0, tail(status)
