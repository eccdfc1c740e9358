"""Fault drills under load in netns mode (issue 18): a killed instance, Redis stopped, PostgreSQL
restarted, a lossy backend<->database link and a partition. Each asserts that no acknowledged order is
lost or doubled and that the drill's written expectations (drills/<kind>.yml) are met; then healing
again changes nothing (the tests: molecule/shared/drilltest.py)."""

from __future__ import annotations

from drilltest import drill_tests
from opsnetns import playbook

FAULTS = [
    "product-killed",
    "redis-stopped",
    "postgres-restarted",
    "database-link-lossy",
    "database-partitioned",
]

test_drill_loses_no_order_and_meets_its_expectations, test_no_fault_is_left_behind = drill_tests(
    playbook, FAULTS
)
