"""Exercises as data: load and check an exercise's YAML, and render its checks into probes.

An exercise is a folder `exercises/<name>/` with `exercise.yml` (what the student reads and what the
grader checks), `break.yml` and `solution.yml` (Ansible tasks). This module refuses a bad exercise
with the file and the field named, before anything changes, and turns its checks, plus the checks
every exercise shares (the shop answers, every instance runs and is registered, the whole
allowed-flow matrix including the flows that must stay closed), into concrete probes with addresses
from the topology. roles/lab_exercise/files/grade.py runs those probes on the lab host.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Ansible loads filter plugins by path, not as a package: make the sibling module importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from shoplab_fields import check_fields
from shoplab_topology import (
    HOST,
    shoplab_docker_networks,
    shoplab_flow_matrix,
    shoplab_instances,
)

MODES = ("netns", "docker")
LEVELS = ("beginner", "intermediate", "advanced")
CHECK_KINDS = ("tcp", "http", "command", "unit", "container", "flow_listed")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
FILES = ("exercise.yml", "break.yml", "solution.yml")

# Fields of an exercise: name -> (type, required).
EXERCISE_FIELDS = {
    "title": (str, True),
    "level": (str, True),
    "modes": (list, True),
    "symptom": (str, True),
    "brief": (str, True),
    "goals": (list, True),
    "may_touch": (list, True),
    "tools": (list, False),
    "redeploy_allowed": (bool, True),
    "hints": (list, True),
    "breaks": (list, True),
    "checks": (list, True),
    "topology": (dict, False),
}
COMMON_CHECK_FIELDS = {
    "name": (str, True),
    "kind": (str, True),
    "why": (str, True),
    "modes": (list, False),
    "within": ((int, float), False),
    "interval": ((int, float), False),
}
KIND_FIELDS = {
    "tcp": {"from": (str, True), "to": (str, True), "expect": (str, True), "timeout": ((int, float), False)},
    "http": {
        "path": (str, True),
        "status": ((int, list), True),
        "method": (str, False),
        "from": (str, False),
        "to": (str, False),
        "body": ((dict, list), False),
        "headers": (dict, False),
        "match": (str, False),
        "header_match": (dict, False),
        "json_len": (dict, False),
        "timeout": ((int, float), False),
    },
    "command": {
        # `in`, not `on`: YAML 1.1 reads a bare `on` as true.
        "in": (str, True),
        "run": (str, True),
        "rc": (int, False),
        "match": (str, False),
        "no_match": (str, False),
    },
    "unit": {"unit": (str, True), "state": (str, False)},
    "container": {"service": (str, True), "health": (str, False)},
    # The topology data itself lists the flow (a design exercise: a rule added by hand does not count).
    "flow_listed": {"from": (str, True), "to": (str, True)},
}
# The default tools a brief points to (an exercise may name its own).
DEFAULT_TOOLS = [
    "make status MODE=<mode>",
    "make capture MODE=<mode>",
    "make diagram MODE=<mode>",
    "make hint",
]


class ExerciseError(ValueError):
    """A bad exercise: the message names the file and the field."""


def _check_fields(where: str, data, spec: dict) -> None:
    check_fields(where, data, spec, ExerciseError)


def _known_names(services: dict, instances: list[dict]) -> set[str]:
    return {HOST, *services, *(i["name"] for i in instances)}


def _check_check(where: str, check: dict, known: set[str], services: dict) -> None:
    if not isinstance(check, dict) or check.get("kind") not in CHECK_KINDS:
        kind = check.get("kind") if isinstance(check, dict) else check
        raise ExerciseError(f"{where}.kind: unknown check kind {kind!r} (known: {', '.join(CHECK_KINDS)})")
    _check_fields(where, check, {**COMMON_CHECK_FIELDS, **KIND_FIELDS[check["kind"]]})
    if not NAME.match(check["name"]):
        raise ExerciseError(f"{where}.name: {check['name']!r} is not a lower-case-with-dashes name")
    for mode in check.get("modes", []):
        if mode not in MODES:
            raise ExerciseError(f"{where}.modes: unknown mode {mode!r} (known: {', '.join(MODES)})")
    for field in ("from", "to", "in"):
        if field in check and check[field] not in known:
            raise ExerciseError(
                f"{where}.{field}: {check[field]!r} names no service or instance of the topology "
                f"(known: {', '.join(sorted(known))})"
            )
    if check["kind"] == "tcp" and check["expect"] not in ("open", "closed"):
        raise ExerciseError(f"{where}.expect: must be 'open' or 'closed', got {check['expect']!r}")
    if "json_len" in check:
        _check_fields(
            f"{where}.json_len", check["json_len"], {"field": (str, True), "equals": ((int, str), True)}
        )
        equals = check["json_len"]["equals"]
        if isinstance(equals, str) and equals not in services:
            raise ExerciseError(f"{where}.json_len.equals: {equals!r} is neither a number nor a service")
    _check_services(where, check, services)
    _check_expectations(where, check, services)


def _check_services(where: str, check: dict, services: dict) -> None:
    """Kinds about a whole service (not one instance) name a service."""
    if check["kind"] == "container" and check["service"] not in services:
        raise ExerciseError(f"{where}.service: {check['service']!r} is not a service of the topology")
    if check["kind"] == "flow_listed":
        for end in ("from", "to"):
            if check[end] not in services and check[end] != HOST:
                raise ExerciseError(f"{where}.{end}: a flow joins services: {check[end]!r} is not one")


def _check_expectations(where: str, check: dict, services: dict) -> None:
    """What a check compares its observation with: regular expressions and a JSON list's length."""
    for field in ("match", "no_match"):
        if field in check:
            try:
                re.compile(check[field])
            except re.error as exc:
                raise ExerciseError(f"{where}.{field}: not a regular expression: {exc}") from None
    if "json_len" in check:
        _check_fields(
            f"{where}.json_len", check["json_len"], {"field": (str, True), "equals": ((int, str), True)}
        )
        equals = check["json_len"]["equals"]
        if isinstance(equals, str) and equals not in services:
            raise ExerciseError(f"{where}.json_len.equals: {equals!r} is neither a number nor a service")


def _count_variables(services: dict) -> list[str]:
    return [svc["instances"] for svc in services.values() if isinstance(svc["instances"], str)]


def _check_topology_change(where: str, change: dict, services: dict) -> None:
    _check_fields(where, change, {"add_flows": (list, False), "counts": (dict, False)})
    for variable, count in change.get("counts", {}).items():
        if variable not in _count_variables(services):
            raise ExerciseError(
                f"{where}.counts.{variable}: not an instance count of the topology "
                f"(known: {', '.join(_count_variables(services))})"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ExerciseError(f"{where}.counts.{variable}: must be a whole number >= 1, got {count!r}")
    for index, flow in enumerate(change.get("add_flows", [])):
        _check_fields(f"{where}.add_flows[{index}]", flow, {"from": (str, True), "to": (str, True)})
        for end in ("from", "to"):
            if flow[end] not in services and not (end == "from" and flow[end] == HOST):
                raise ExerciseError(
                    f"{where}.add_flows[{index}].{end}: {flow[end]!r} is not a service of the topology"
                )


def _check_placeholders(where: str, check: dict, instances: list[dict], tiers: dict) -> None:
    """Every `<name.field>` of a command or a pattern names a value of the topology."""
    for field in ("run", "match", "no_match"):
        try:
            _fill(check.get(field), instances, {"tiers": tiers})
        except ExerciseError as exc:
            raise ExerciseError(f"{where}.{field}: {exc}") from None


def with_counts(exercise: dict | None, services: dict, instances: list[dict], tiers: dict) -> list[dict]:
    """The instances as the exercise's lab has them: an exercise may scale a service (topology.counts)."""
    counts = (exercise or {}).get("topology", {}).get("counts")
    if not counts:
        return instances
    current = {
        svc["instances"]: sum(1 for i in instances if i["service"] == name)
        for name, svc in services.items()
        if isinstance(svc["instances"], str)
    }
    return shoplab_instances(services, tiers, {**current, **counts})


def validate_exercise(
    data, path: str, services: dict, instances: list[dict], tiers: dict | None = None
) -> dict:
    """The exercise's data, unchanged, or an ExerciseError naming `path` and the field."""
    _check_fields(path, data, EXERCISE_FIELDS)
    if data["level"] not in LEVELS:
        raise ExerciseError(f"{path}: level: must be one of {', '.join(LEVELS)}, got {data['level']!r}")
    if not data["modes"] or any(m not in MODES for m in data["modes"]):
        raise ExerciseError(
            f"{path}: modes: must list one or more of {', '.join(MODES)}, got {data['modes']}"
        )
    for field in ("hints", "goals", "may_touch", "breaks", "checks"):
        if not data[field]:
            raise ExerciseError(f"{path}: {field}: must not be empty")
    if "topology" in data:
        _check_topology_change(f"{path}: topology", data["topology"], services)
        instances = with_counts(data, services, instances, tiers or {})
    known = _known_names(services, instances)
    names = []
    for index, check in enumerate(data["checks"]):
        _check_check(f"{path}: checks[{index}]", check, known, services)
        _check_placeholders(f"{path}: checks[{index}]", check, instances, tiers or {})
        names.append(check["name"])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ExerciseError(f"{path}: checks: the name {duplicates[0]!r} is used twice")
    for index, name in enumerate(data["breaks"]):
        if name not in names:
            raise ExerciseError(f"{path}: breaks[{index}]: {name!r} names no check of this exercise")
    return data


def shoplab_exercise_load(
    folder: str, services: dict, instances: list[dict], tiers: dict | None = None
) -> dict:
    """Read and check exercises/<name>/exercise.yml; its name is the folder's."""
    import yaml

    base = Path(folder)
    for name in FILES:
        if not (base / name).is_file():
            raise ExerciseError(f"{base / name}: missing (an exercise has {', '.join(FILES)})")
    path = base / "exercise.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ExerciseError(f"{path}: not valid YAML: {exc}") from None
    validate_exercise(data, str(path), services, instances, tiers)
    return {**data, "name": base.name, "tools": data.get("tools") or DEFAULT_TOOLS}


def shoplab_exercise_catalogue(
    root: str, services: dict, instances: list[dict], tiers: dict | None = None
) -> list[dict]:
    """Every exercise under `root`, checked, sorted by level then name."""
    found = [
        shoplab_exercise_load(str(folder), services, instances, tiers)
        for folder in sorted(Path(root).iterdir())
        if (folder / "exercise.yml").is_file()
    ]
    return sorted(found, key=lambda e: (LEVELS.index(e["level"]), e["name"]))


# ---- rendering: checks -> probes -----------------------------------------------------------------


def _instances_of(name: str, instances: list[dict]) -> list[dict]:
    """A service name stands for all its instances; an instance name for itself."""
    return [i for i in instances if name in (i["service"], i["name"])]


def _endpoint(instance: dict, lab: dict) -> dict:
    """How the lab host reaches into an instance: its namespace (netns) or its container (docker)."""
    if lab["mode"] == "netns":
        return {"label": instance["name"], "netns": instance["namespace"]}
    container = f"{lab['compose_project']}-{lab['services'][instance['service']]['compose_service']}"
    return {"label": instance["name"], "container": f"{container}-{instance['index']}"}


def _target(instance: dict, lab: dict) -> dict:
    """Where a probe connects: the netns address, or every address of the container (docker)."""
    found = {**_endpoint(instance, lab), "port": instance["port"]}
    if lab["mode"] == "netns":
        found["addresses"] = [instance["address"]]
    return found


def _host_gateway(lab: dict, instances: list[dict]) -> dict:
    """The gateway as the lab host's clients reach it: its netns address, or Docker's published port."""
    gateway = _instances_of("gateway", instances)[0]
    if lab["mode"] == "docker":
        return {"label": "gateway (published)", "addresses": ["127.0.0.1"], "port": gateway["port"]}
    return {"label": gateway["name"], "addresses": [gateway["address"]], "port": gateway["port"]}


def _source(name: str, instances: list[dict], lab: dict) -> list[dict]:
    if name == HOST:
        return [{"label": HOST}]
    return [_endpoint(i, lab) for i in _instances_of(name, instances)]


PLACEHOLDER = re.compile(r"<([a-z0-9-]+)\.([a-z_]+)>")


def _fill(text: str | None, instances: list[dict], lab: dict, regex: bool = False) -> str | None:
    """Replace `<postgres.address>`, `<order-2.namespace>`, `<backend.bridge>`… with the topology's value
    (a service stands for its first instance; a tier name for the tier). In a regex, the value is escaped."""
    if text is None:
        return None

    def value(match: re.Match) -> str:
        name, field = match.groups()
        found = _instances_of(name, instances)
        source = found[0] if found else lab.get("tiers", {}).get(name)
        if not source or field not in source:
            raise ExerciseError(f"placeholder {match.group(0)}: no {field!r} for {name!r} in the topology")
        return re.escape(str(source[field])) if regex else str(source[field])

    return PLACEHOLDER.sub(value, text)


def _json_len(spec: dict | None, instances: list[dict]) -> dict | None:
    """`equals` is a number, or a service's name: as many as it has instances."""
    if spec is None or not isinstance(spec["equals"], str):
        return spec
    return {**spec, "equals": len(_instances_of(spec["equals"], instances))}


def _render_check(check: dict, instances: list[dict], lab: dict) -> dict:
    kind = check["kind"]
    probe = {
        "name": check["name"],
        "kind": kind,
        "why": check["why"],
        "within": check.get("within", 0),
        "interval": check.get("interval", 1),
        "baseline": False,
    }
    if kind == "tcp":
        probe["expect"] = check["expect"]
        probe["timeout"] = check.get("timeout", 3)
        probe["sources"] = _source(check["from"], instances, lab)
        if check["from"] == HOST and check["to"] == "gateway":
            probe["targets"] = [_host_gateway(lab, instances)]
        else:
            probe["targets"] = [_target(i, lab) for i in _instances_of(check["to"], instances)]
    elif kind == "http":
        source = check.get("from", HOST)
        target = check.get("to", "gateway")
        probe.update(
            method=check.get("method", "GET"),
            path=check["path"],
            status=check["status"] if isinstance(check["status"], list) else [check["status"]],
            body=check.get("body"),
            headers=check.get("headers", {}),
            match=_fill(check.get("match"), instances, lab, regex=True),
            header_match=check.get("header_match", {}),
            json_len=_json_len(check.get("json_len"), instances),
            timeout=check.get("timeout", 5),
            source=_source(source, instances, lab)[0],
            target=(
                _host_gateway(lab, instances)
                if source == HOST and target == "gateway"
                else _target(_instances_of(target, instances)[0], lab)
            ),
        )
    elif kind == "command":
        probe.update(
            on=_source(check["in"], instances, lab),
            run=_fill(check["run"], instances, lab),
            rc=check.get("rc", 0),
            match=_fill(check.get("match"), instances, lab, regex=True),
            no_match=_fill(check.get("no_match"), instances, lab, regex=True),
        )
    elif kind == "unit":
        probe.update(unit=check["unit"], state=check.get("state", "active"))
    elif kind == "flow_listed":
        # Decided here, on the controller, from the data the lab's roles render: nothing to probe.
        flow = {"from": check["from"], "to": check["to"]}
        probe.update(listed_flow=f"{flow['from']} -> {flow['to']}", listed=flow in lab["topology_flows"])
    else:
        service = lab["services"][check["service"]]["compose_service"]
        probe.update(
            containers=[_endpoint(i, lab)["container"] for i in _instances_of(check["service"], instances)],
            compose_service=service,
            health=check.get("health", "healthy"),
        )
    return probe


def _baseline(instances: list[dict], services: dict, flows: list[dict], lab: dict) -> list[dict]:
    """What every exercise checks besides its own: the shop answers, every instance runs and is
    registered, and every cell of the allowed-flow matrix (open where the list allows, closed where
    it does not), so that a "fix" that opens everything fails."""
    checks = [
        {
            "name": "shop-catalogue",
            "kind": "http",
            "path": "/api/products",
            "status": 200,
            "why": "customers browse the catalogue through the gateway",
            "within": 10,
        },
        {
            "name": "shop-order",
            "kind": "http",
            "method": "POST",
            "path": "/api/orders",
            "body": {"items": [{"product_id": 1, "quantity": 1}]},
            "status": 201,
            "why": "customers place orders through the gateway",
            "within": 10,
        },
    ]
    for name in sorted({i["service"] for i in instances}):
        if lab["mode"] == "netns":
            for inst in _instances_of(name, instances):
                checks.append(
                    {
                        "name": f"running-{inst['name']}",
                        "kind": "unit",
                        "unit": f"shoplab-{inst['name']}.service",
                        "why": f"{inst['name']} must run for the shop to be whole",
                    }
                )
        else:
            checks.append(
                {
                    "name": f"running-{name}",
                    "kind": "container",
                    "service": name,
                    "why": f"every {name} container must run and pass its healthcheck",
                    "within": int(lab.get("container_health_within_s", 0)),
                }
            )
    for name in lab["registered_services"]:
        count = len(_instances_of(name, instances))
        checks.append(
            {
                "name": f"registered-{name}",
                "kind": "http",
                "from": "gateway",
                "to": "registry",
                "path": f"/services/{name}/instances",
                "status": 200,
                "json_len": {"field": "instances", "equals": name},
                "why": f"the gateway balances only over registered instances: {count} {name} instance(s) run",
                "within": 15,
            }
        )
    rendered = [{**_render_check(c, instances, lab), "baseline": True} for c in checks]
    return rendered + _flow_checks(instances, services, flows, lab)


def _flow_checks(instances: list[dict], services: dict, flows: list[dict], lab: dict) -> list[dict]:
    """One check per (source service, target service) pair of the flow matrix, every instance pair
    probed, the lab host's included, in both modes."""
    cells = shoplab_flow_matrix(instances, services, flows)
    by_name = {i["name"]: i for i in instances}
    pairs: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        source = HOST if cell["source"] == HOST else by_name[cell["source"]]["service"]
        target = by_name[cell["target"]]["service"]
        pairs.setdefault((source, target), []).append(cell)
    checks = []
    for (source, target), group in pairs.items():
        allowed = {c["allowed"] for c in group}
        # A pair is all-open or all-closed in both modes' matrices; refuse anything else loudly.
        if len(allowed) != 1:
            raise ExerciseError(f"flow matrix: {source} -> {target} mixes open and closed cells")
        expect = "open" if allowed.pop() else "closed"
        reason = (
            f"the allowed-flow list {'lets' if expect == 'open' else 'does not let'} {source} reach {target}"
        )
        check = _render_check(
            {
                "name": f"flow-{source}-to-{target}",
                "kind": "tcp",
                "from": source,
                "to": target,
                "expect": expect,
                "why": reason,
            },
            instances,
            lab,
        )
        checks.append({**check, "baseline": True, "flow": True})
    return checks


def shoplab_exercise_plan(
    exercise: dict | None, instances: list[dict], services: dict, flows: list[dict], lab: dict
) -> list[dict]:
    """The probes that grade a lab: the exercise's own checks first (the intended first failure is
    one of them), then the baseline. `exercise` None grades the clean lab (the baseline alone).
    An exercise that adds flows to the topology is graded against the topology with those flows.
    `lab`: mode (netns|docker), tiers, compose_project, registered_services, container_health_within_s."""
    lab = {
        "compose_project": "shoplab",
        "registered_services": ["product", "order"],
        **lab,
        "services": services,
    }
    lab["topology_flows"] = [{"from": f["from"], "to": f["to"]} for f in flows]
    mode = lab["mode"]
    own = []
    instances = with_counts(exercise, services, instances, lab.get("tiers", {}))
    if exercise:
        flows = [*flows, *exercise.get("topology", {}).get("add_flows", [])]
        own = [_render_check(c, instances, lab) for c in exercise["checks"] if mode in c.get("modes", MODES)]
    return own + _baseline(instances, services, flows, lab)


def shoplab_docker_lab_networks(services: dict, flows: list[dict], tiers: dict) -> list[str]:
    """docker mode: the names of the lab's tier networks (what a route to a container must use)."""
    used = {tier for joined in shoplab_docker_networks(services, flows).values() for tier in joined}
    return sorted(tiers[t]["docker_network"] for t in used)


def _refusing(function):
    """As an Ansible filter, a bad exercise fails the task with its message alone."""

    def wrapped(*args, **kwargs):
        from ansible.errors import AnsibleFilterError

        try:
            return function(*args, **kwargs)
        except ExerciseError as exc:
            raise AnsibleFilterError(f"bad exercise: {exc}") from None

    return wrapped


class FilterModule:
    """Ansible filters for the exercises (roles/lab_exercise)."""

    def filters(self):
        return {
            "shoplab_exercise_load": _refusing(shoplab_exercise_load),
            "shoplab_exercise_catalogue": _refusing(shoplab_exercise_catalogue),
            "shoplab_exercise_plan": _refusing(shoplab_exercise_plan),
            "shoplab_docker_lab_networks": shoplab_docker_lab_networks,
        }
