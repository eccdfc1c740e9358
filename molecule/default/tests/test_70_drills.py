"""Fault drills under load in netns mode (issue 18): a killed instance, Redis stopped, PostgreSQL
restarted, a lossy backend<->database link and a partition. Each asserts that no acknowledged order is
lost or doubled and that the drill's written expectations (drills/<kind>.yml) are met; then healing
again changes nothing."""

from __future__ import annotations

import pytest
from drilltest import assert_heal_leaves_nothing, assert_no_order_lost_and_expectations_met, run_drill
from opsnetns import playbook

FAULTS = [
    "product-killed",
    "redis-stopped",
    "postgres-restarted",
    "database-link-lossy",
    "database-partitioned",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_drill_loses_no_order_and_meets_its_expectations(fault, tmp_path):
    report = run_drill(playbook, fault, tmp_path)
    assert_no_order_lost_and_expectations_met(report, fault)


def test_no_fault_is_left_behind():
    assert_heal_leaves_nothing(playbook)
