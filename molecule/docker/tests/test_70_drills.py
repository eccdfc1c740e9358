"""Fault drills under load in docker mode (issue 18): an order instance killed, Redis stopped,
PostgreSQL restarted and a partition, with the same expectations as netns (drills/<kind>.yml): no
acknowledged order lost or doubled; then healing again changes nothing (the tests:
molecule/shared/drilltest.py)."""

from __future__ import annotations

from drilltest import drill_tests
from opslib import playbook

FAULTS = ["order-killed", "redis-stopped", "postgres-restarted", "database-partitioned"]

test_drill_loses_no_order_and_meets_its_expectations, test_no_fault_is_left_behind = drill_tests(
    playbook, FAULTS
)
