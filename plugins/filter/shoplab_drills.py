"""Fault drills as data: load and check `drills/<kind>.yml`, and resolve what one run does.

A drill file names one fault kind: what it breaks (`fault`: an action and its target), for how long and
under how much load (`parameters`, each overridable from the command line), and what must hold
(`expect`). This module refuses a bad file with the file and the field named, before anything changes
(roles/lab_drill calls it in its preflight; tests/test_drills.py feeds it bad files). The harness that
judges a run (drills/shoplab_drill) reads the same checked dictionaries.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

# Ansible loads filter plugins by path, not as a package: make the sibling module importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shoplab_fields import check_fields

MODES = ("netns", "docker")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# What a fault does, and what it may act on. `kill`: SIGKILL every process of one instance (systemd or
# Docker restarts it by itself); `stop`: stop a datastore until the heal starts it; `lossy-link` and
# `partition`: the link between two tiers (tc netem, or iptables where netem is missing; iptables DROP).
ACTIONS = {
    "kill": ("product", "order", "registry"),
    "stop": ("redis", "postgres"),
    "lossy-link": ("backend-database",),
    "partition": ("backend-database",),
}

# Drill fields: name -> (type, required).
DRILL_FIELDS = {
    "title": (str, True),
    "what": (str, True),
    "why": (str, True),
    "modes": (list, True),
    "fault": (dict, True),
    "parameters": (dict, True),
    "expect": (dict, True),
}
FAULT_FIELDS = {"action": (str, True), "target": (str, True), "instance": (int, False)}
NUMBER = (int, float)
# parameters: name -> (type, required, minimum, maximum)
PARAMETER_FIELDS = {
    "steady_s": (NUMBER, True, 1, 600),
    "duration_s": (NUMBER, True, 0, 600),
    "recovery_s": (NUMBER, True, 1, 600),
    "delay_ms": (NUMBER, False, 0, 10000),
    "jitter_ms": (NUMBER, False, 0, 10000),
    "loss_percent": (NUMBER, False, 0, 100),
}
LINK_PARAMETERS = ("delay_ms", "jitter_ms", "loss_percent")
# expect: name -> (type, required, what it bounds). lost and duplicated must be written, and be 0.
EXPECT_FIELDS = {
    "lost": (int, True, "acknowledged orders missing from PostgreSQL"),
    "duplicated": (int, True, "orders created more than once (or stock moved by more than the orders)"),
    "unknown_max": (int, False, "orders the client gave up on (unknown outcome)"),
    "failed_reads_max": (int, False, "catalogue reads that failed, from the fault to the end"),
    "failed_order_attempts_max": (int, False, "order attempts that failed (before their retries)"),
    "error_window_s_max": (NUMBER, False, "seconds from the first to the last failed request"),
    "first_success_s_max": (NUMBER, False, "seconds from the heal to the first successful order"),
    "steady_state_s_max": (NUMBER, False, "seconds from the heal to steady state"),
    "read_p99_ms_max": (NUMBER, False, "p99 of the catalogue reads during the fault, ms"),
}


class DrillError(ValueError):
    """A drill file (or a requested override) is wrong; the message names the file and the field."""


def _fields(where: str, data, spec: dict) -> None:
    check_fields(where, data, spec, DrillError)


def _check_fault(path: str, fault) -> None:
    _fields(f"{path}.fault", fault, FAULT_FIELDS)
    if fault["action"] not in ACTIONS:
        raise DrillError(
            f"{path}.fault.action: unknown action {fault['action']!r} (known: {', '.join(ACTIONS)})"
        )
    if fault["target"] not in ACTIONS[fault["action"]]:
        raise DrillError(
            f"{path}.fault.target: {fault['action']} acts on {', '.join(ACTIONS[fault['action']])},"
            f" got {fault['target']!r}"
        )
    if "instance" in fault and (fault["action"] != "kill" or fault["instance"] < 1):
        raise DrillError(f"{path}.fault.instance: only a kill names an instance, a whole number >= 1")


def _check_parameters(path: str, fault: dict, parameters) -> None:
    _fields(f"{path}.parameters", parameters, PARAMETER_FIELDS)
    for field, (_, _, low, high) in PARAMETER_FIELDS.items():
        if field in parameters and not low <= parameters[field] <= high:
            raise DrillError(
                f"{path}.parameters.{field}: must be between {low} and {high}, got {parameters[field]!r}"
            )
    if fault["action"] == "lossy-link":
        missing = [p for p in LINK_PARAMETERS if p not in parameters]
        if missing:
            raise DrillError(
                f"{path}.parameters.{missing[0]}: missing (a lossy link needs {LINK_PARAMETERS})"
            )
    elif any(p in parameters for p in LINK_PARAMETERS):
        extra = next(p for p in LINK_PARAMETERS if p in parameters)
        raise DrillError(f"{path}.parameters.{extra}: only a lossy-link drill takes it")


def _check_expect(path: str, expect) -> None:
    _fields(f"{path}.expect", expect, EXPECT_FIELDS)
    for field in ("lost", "duplicated"):
        if expect[field] != 0:
            raise DrillError(f"{path}.expect.{field}: must be 0 (no drill accepts it), got {expect[field]!r}")
    for field, value in expect.items():
        if value < 0:
            raise DrillError(f"{path}.expect.{field}: must be >= 0, got {value!r}")


def validate_drill(path: str, data) -> dict:
    """The checked drill (a new dict, with `name` from the file name), or DrillError naming path and field."""
    name = Path(path).stem
    if not NAME.match(name):
        raise DrillError(f"{path}: the file name must be a lower-case-with-dashes kind name, got {name!r}")
    _fields(path, data, DRILL_FIELDS)
    for field in ("title", "what", "why"):
        if not data[field].strip():
            raise DrillError(f"{path}.{field}: must not be empty")
    if not data["modes"] or any(mode not in MODES for mode in data["modes"]):
        raise DrillError(f"{path}.modes: must list one or more of {', '.join(MODES)}, got {data['modes']!r}")
    _check_fault(path, data["fault"])
    _check_parameters(path, data["fault"], data["parameters"])
    _check_expect(path, data["expect"])
    fault, parameters, expect = data["fault"], data["parameters"], data["expect"]
    return {
        "name": name,
        "file": str(path),
        **{k: data[k] for k in DRILL_FIELDS},
        "fault": {"instance": 1, **fault} if fault["action"] == "kill" else dict(fault),
        "parameters": dict(parameters),
        "expect": dict(expect),
    }


def shoplab_drill_load(path: str) -> dict:
    """Read and check one drill file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DrillError(f"{path}: cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DrillError(f"{path}: not valid YAML: {exc}") from None
    return validate_drill(path, data)


def shoplab_drill_catalogue(directory: str) -> list[dict]:
    """Every drill in `directory` (its *.yml files), checked, sorted by name."""
    files = sorted(Path(directory).glob("*.yml"))
    if not files:
        raise DrillError(f"{directory}: holds no drill (<kind>.yml)")
    drills = [shoplab_drill_load(str(f)) for f in files]
    # Every kind in turn means processes first, then datastores, then the network (the order of ACTIONS).
    order = [(action, target) for action, targets in ACTIONS.items() for target in targets]
    return sorted(
        drills, key=lambda d: (order.index((d["fault"]["action"], d["fault"]["target"])), d["name"])
    )


def _override(drills: list[dict], field: str, raw, low: float, high: float) -> list[dict]:
    if raw in (None, ""):
        return drills
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise DrillError(f"lab_drill_{field}: must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise DrillError(f"lab_drill_{field}: must be between {low} and {high}, got {raw!r}")
    value = int(value) if value.is_integer() else value
    return [{**d, "parameters": {**d["parameters"], field: value}} for d in drills]


def shoplab_drill_select(catalogue: list[dict], fault: str, mode: str, duration=None) -> list[dict]:
    """The drills one run does: `fault` (a kind, or empty for every kind of `mode`), DURATION applied."""
    if mode not in MODES:
        raise DrillError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    names = [d["name"] for d in catalogue]
    if fault:
        if fault not in names:
            raise DrillError(f"lab_drill_fault: no drill {fault!r} (known: {', '.join(names)})")
        chosen = [d for d in catalogue if d["name"] == fault]
        if mode not in chosen[0]["modes"]:
            raise DrillError(f"lab_drill_fault: {fault} runs in {', '.join(chosen[0]['modes'])}, not {mode}")
    else:
        chosen = [d for d in catalogue if mode in d["modes"]]
    low, high = PARAMETER_FIELDS["duration_s"][2:]
    return _override(chosen, "duration_s", duration, low, high)


class FilterModule:
    def filters(self):
        return {
            "shoplab_drill_catalogue": shoplab_drill_catalogue,
            "shoplab_drill_select": shoplab_drill_select,
        }
