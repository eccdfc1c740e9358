"""Fault drills under load in docker mode (issue 18): an order instance killed, Redis stopped,
PostgreSQL restarted and a partition, with the same expectations as netns (drills/<kind>.yml): no
acknowledged order lost or doubled; then healing again changes nothing."""

from __future__ import annotations

import pytest
from drilltest import assert_heal_leaves_nothing, assert_no_order_lost_and_expectations_met, run_drill
from opslib import playbook

FAULTS = ["order-killed", "redis-stopped", "postgres-restarted", "database-partitioned"]


@pytest.mark.parametrize("fault", FAULTS)
def test_drill_loses_no_order_and_meets_its_expectations(fault, tmp_path):
    report = run_drill(playbook, fault, tmp_path)
    assert_no_order_lost_and_expectations_met(report, fault)


def test_no_fault_is_left_behind():
    assert_heal_leaves_nothing(playbook)
