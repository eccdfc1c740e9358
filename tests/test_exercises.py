"""The exercises as data (plugins/filter/shoplab_exercises.py) and their grader
(roles/lab_exercise/files/grade.py).

The grader is exercised for real on loopback: real listening sockets, real connection attempts, a real
HTTP server; only the lab's namespaces are left to the Molecule scenarios.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import shoplab_exercises as ex
import shoplab_topology as topo

ROOT = Path(__file__).resolve().parent.parent
DATA = topo.load_topology()
SERVICES, TIERS, FLOWS = DATA["shoplab_services"], DATA["shoplab_tiers"], DATA["shoplab_allowed_flows"]
INSTANCES = topo.shoplab_instances(SERVICES, TIERS, topo.default_counts(DATA))
CATALOGUE = ex.shoplab_exercise_catalogue(str(ROOT / "exercises"), SERVICES, INSTANCES, TIERS)
LAB = {"tiers": TIERS}


def load_grader():
    spec = importlib.util.spec_from_file_location("grade", ROOT / "roles/lab_exercise/files/grade.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["grade"] = module
    spec.loader.exec_module(module)
    return module


GRADE = load_grader()


# ---- the catalogue -------------------------------------------------------------------------------


def test_at_least_twelve_exercises_over_both_modes():
    assert len(CATALOGUE) >= 12
    assert sum("netns" in e["modes"] for e in CATALOGUE) >= 10
    assert sum("docker" in e["modes"] for e in CATALOGUE) >= 4


@pytest.mark.parametrize("exercise", CATALOGUE, ids=lambda e: e["name"])
def test_every_exercise_renders_in_its_modes_with_the_whole_flow_matrix(exercise):
    for mode in exercise["modes"]:
        plan = ex.shoplab_exercise_plan(exercise, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": mode})
        names = [c["name"] for c in plan]
        assert len(names) == len(set(names)), "check names must be unique"
        own = [c for c in plan if not c["baseline"]]
        assert [c["name"] for c in own][: len(exercise["breaks"])] == exercise["breaks"] or all(
            b in names for b in exercise["breaks"]
        )
        assert own[0]["name"] in exercise["breaks"], "the intended first failure is one of the exercise's own"
        flows = [c for c in plan if c.get("flow")]
        assert any(c["expect"] == "closed" for c in flows), "must-fail checks are part of every exercise"
        assert any(c["expect"] == "open" for c in flows)
        for check in plan:
            for text in (check.get("run"), check.get("match"), check.get("no_match")):
                assert text is None or "<" not in text.replace("<[", "").replace("<=", ""), text


def test_every_listed_flow_is_checked_open_and_a_cross_tier_flow_not_listed_closed():
    plan = ex.shoplab_exercise_plan(None, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": "netns"})
    by_name = {c["name"]: c for c in plan}
    for flow in FLOWS:
        assert by_name[f"flow-{flow['from']}-to-{flow['to']}"]["expect"] == "open"
    assert by_name["flow-gateway-to-postgres"]["expect"] == "closed"
    assert by_name["flow-host-to-redis"]["expect"] == "closed"


def test_docker_host_reaches_the_gateway_through_its_published_port_and_nothing_else():
    """The lab host is a source in docker mode too: the gateway as its clients reach it (the published
    port), every other service probed at its containers' addresses and expected closed."""
    plan = ex.shoplab_exercise_plan(None, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": "docker"})
    host_flows = {c["name"]: c for c in plan if c.get("flow") and c["sources"][0]["label"] == "host"}
    assert set(host_flows) == {f"flow-host-to-{name}" for name in SERVICES}
    assert host_flows["flow-host-to-gateway"]["targets"][0]["addresses"] == ["127.0.0.1"]
    assert host_flows["flow-host-to-gateway"]["expect"] == "open"
    closed = [c for name, c in host_flows.items() if name != "flow-host-to-gateway"]
    assert {c["expect"] for c in closed} == {"closed"}
    assert all("container" in t for c in closed for t in c["targets"])


def test_an_exercise_that_scales_is_graded_with_its_instances():
    scaled = next(e for e in CATALOGUE if e.get("topology", {}).get("counts"))
    plan = ex.shoplab_exercise_plan(scaled, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": scaled["modes"][0]})
    registered = next(c for c in plan if c["name"] == "registered-product")
    assert registered["json_len"]["equals"] == scaled["topology"]["counts"]["product_instances"]


def test_a_design_exercise_is_graded_against_the_data_and_the_flow_it_adds():
    """The flow must be in the topology data (a rule by hand does not count) and open; the matrix
    expects it open too, the rest as before."""
    design = next(e for e in CATALOGUE if e["name"] == "add-a-flow")
    added = design["topology"]["add_flows"][0]
    for mode in design["modes"]:
        before = ex.shoplab_exercise_plan(design, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": mode})
        listed = next(c for c in before if c["kind"] == "flow_listed")
        assert listed["listed"] is False
        cell = next(c for c in before if c["name"] == f"flow-{added['from']}-to-{added['to']}")
        assert cell["expect"] == "open"
        after = ex.shoplab_exercise_plan(design, INSTANCES, SERVICES, [*FLOWS, added], {**LAB, "mode": mode})
        assert next(c for c in after if c["kind"] == "flow_listed")["listed"] is True
        assert GRADE.grade_one(loopback_lab(), listed)["observed"].startswith("not listed")


def test_placeholders_take_the_topologys_values():
    exercise = next(e for e in CATALOGUE if e["name"] == "hosts-entry-wrong")
    plan = ex.shoplab_exercise_plan(exercise, INSTANCES, SERVICES, FLOWS, {**LAB, "mode": "netns"})
    check = next(c for c in plan if c["name"] == "order-2-resolves-postgres")
    postgres = next(i for i in INSTANCES if i["service"] == "postgres")
    assert check["match"] == "^" + postgres["address"].replace(".", r"\.") + r"\s"
    assert check["on"] == [{"label": "order-2", "netns": "ns-order-2"}]


# ---- bad exercises are refused, naming the file and the field ------------------------------------

GOOD = """\
title: t
level: beginner
modes: [netns]
symptom: s
brief: b
goals: [g]
may_touch: [m]
redeploy_allowed: false
hints: [h]
breaks: [reach]
checks:
  - {name: reach, kind: tcp, from: gateway, to: product, expect: open, why: w}
"""


def write_exercise(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "broken-one"
    folder.mkdir()
    (folder / "exercise.yml").write_text(text)
    for name in ("break.yml", "solution.yml"):
        (folder / name).write_text("---\n[]\n")
    return folder


def load(folder: Path) -> dict:
    return ex.shoplab_exercise_load(str(folder), SERVICES, INSTANCES, TIERS)


def test_a_good_exercise_loads(tmp_path):
    assert load(write_exercise(tmp_path, GOOD))["name"] == "broken-one"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("kind: tcp", "checks[0].kind: unknown check kind 'ping'"),
        ("to: product", "checks[0].to: 'billing' names no service or instance"),
        ("from: gateway", "checks[0].from: 'billing' names no service or instance"),
        ("expect: open", "checks[0].expect: must be 'open' or 'closed'"),
        ("level: beginner", "level: must be one of"),
        ("breaks: [reach]", "breaks[0]: 'nothing' names no check"),
        ("hints: [h]", "hints: missing"),
    ],
)
def test_a_bad_exercise_is_refused_with_file_and_field(tmp_path, change, message):
    replacement = {
        "kind: tcp": "kind: ping",
        "to: product": "to: billing",
        "from: gateway": "from: billing",
        "expect: open": "expect: maybe",
        "level: beginner": "level: wizard",
        "breaks: [reach]": "breaks: [nothing]",
        "hints: [h]": "",
    }[change]
    folder = write_exercise(tmp_path, GOOD.replace(change, replacement))
    with pytest.raises(ex.ExerciseError) as caught:
        load(folder)
    assert str(folder / "exercise.yml") in str(caught.value)
    assert message in str(caught.value)


def test_a_topology_change_naming_an_unknown_service_is_refused(tmp_path):
    folder = write_exercise(tmp_path, GOOD + "topology:\n  add_flows: [{from: reporting, to: postgres}]\n")
    with pytest.raises(ex.ExerciseError, match=r"topology.add_flows\[0\].from: 'reporting' is not a service"):
        load(folder)


def test_a_flow_listed_check_naming_an_instance_is_refused(tmp_path):
    listed = "  - {name: listed, kind: flow_listed, from: gateway, to: order-1, why: w}\n"
    folder = write_exercise(tmp_path, GOOD + listed)
    message = r"checks\[1\].to: a flow joins services: 'order-1' is not one"
    with pytest.raises(ex.ExerciseError, match=message):
        load(folder)


def test_a_placeholder_the_topology_lacks_is_refused_at_load(tmp_path):
    command = "  - {name: look, kind: command, in: host, run: ip link show <backend.bridgee>, why: w}\n"
    folder = write_exercise(tmp_path, GOOD + command)
    message = r"checks\[1\].run: placeholder <backend.bridgee>: no 'bridgee'"
    with pytest.raises(ex.ExerciseError, match=message):
        load(folder)


def test_a_missing_task_file_is_refused(tmp_path):
    folder = write_exercise(tmp_path, GOOD)
    (folder / "solution.yml").unlink()
    with pytest.raises(ex.ExerciseError, match=r"solution.yml: missing"):
        load(folder)


def test_a_bare_on_is_caught_as_the_yaml_boolean_it_is(tmp_path):
    folder = write_exercise(
        tmp_path,
        GOOD.replace("checks:\n", "checks:\n  - {name: cmd, kind: command, on: host, run: 'true', why: w}\n"),
    )
    with pytest.raises(ex.ExerciseError, match=r"checks\[0\].True: unknown field"):
        load(folder)


def test_invalid_yaml_is_refused_with_the_file(tmp_path):
    folder = write_exercise(tmp_path, GOOD + "  - name: [unclosed\n")
    with pytest.raises(ex.ExerciseError, match=r"exercise\.yml: not valid YAML"):
        load(folder)


# ---- the grader, for real on loopback ------------------------------------------------------------


def loopback_lab() -> object:
    return GRADE.Lab({"mode": "netns", "subnets": ["127.0.0.0/8"], "bridges": []})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tcp_check(port: int, expect: str, within: float = 0) -> dict:
    return {
        "name": "probe",
        "kind": "tcp",
        "why": "a test",
        "expect": expect,
        "timeout": 1,
        "within": within,
        "interval": 0.2,
        "sources": [{"label": "host"}],
        "targets": [{"label": "listener", "addresses": ["127.0.0.1"], "port": port}],
    }


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_a_must_fail_check_that_finds_the_port_open_fails(listener):
    result = GRADE.grade_one(loopback_lab(), tcp_check(listener, "closed"))
    assert not result["ok"]
    assert result["must_fail"]
    assert "must stay closed: it is open" in result["observed"]


def test_a_must_fail_check_passes_on_a_closed_port():
    result = GRADE.grade_one(loopback_lab(), tcp_check(free_port(), "closed"))
    assert result["ok"], result


def test_an_open_check_says_why_it_cannot_connect():
    result = GRADE.grade_one(loopback_lab(), tcp_check(free_port(), "open"))
    assert not result["ok"]
    assert "host cannot reach listener 127.0.0.1" in result["observed"]
    assert "refused" in result["observed"].lower()


def test_a_retry_window_passes_a_check_that_becomes_true_within_it():
    port = free_port()
    server = socket.socket()

    def open_later():
        time.sleep(1.0)
        server.bind(("127.0.0.1", port))
        server.listen()

    threading.Thread(target=open_later, daemon=True).start()
    try:
        result = GRADE.grade_one(loopback_lab(), tcp_check(port, "open", within=8))
    finally:
        time.sleep(0.1)
        server.close()
    assert result["ok"], result
    assert result["attempts"] > 1


def test_without_a_window_the_same_check_fails_at_once():
    result = GRADE.grade_one(loopback_lab(), tcp_check(free_port(), "open", within=0))
    assert not result["ok"]
    assert result["attempts"] == 1


def test_a_probe_outside_the_lab_is_refused_without_sending():
    lab = GRADE.Lab({"mode": "netns", "subnets": ["172.20.0.0/24"], "bridges": ["br-frontend"]})
    check = tcp_check(80, "open")
    check["targets"][0]["addresses"] = ["192.0.2.1"]
    result = GRADE.grade_one(lab, check)
    assert not result["ok"]
    assert "192.0.2.1 is not in a lab subnet" in result["observed"]


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"instances": [1, 2]}).encode()
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Cache", "BYPASS")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def http_check(port: int, path: str, **extra) -> dict:
    return {
        "name": "web",
        "kind": "http",
        "why": "a test",
        "method": "GET",
        "path": path,
        "status": [200],
        "body": None,
        "headers": {},
        "match": None,
        "header_match": {},
        "json_len": None,
        "timeout": 2,
        "source": {"label": "host"},
        "target": {"label": "web", "addresses": ["127.0.0.1"], "port": port},
        **extra,
    }


def test_http_checks_status_headers_and_json_lengths(http_server):
    lab = loopback_lab()
    assert GRADE.grade_one(lab, http_check(http_server, "/ok"))["ok"]
    wrong = GRADE.grade_one(lab, http_check(http_server, "/broken"))
    assert not wrong["ok"] and ": 503" in wrong["observed"]
    header = GRADE.grade_one(lab, http_check(http_server, "/ok", header_match={"X-Cache": "HIT|MISS"}))
    assert not header["ok"] and "X-Cache: BYPASS" in header["observed"]
    length = GRADE.grade_one(
        lab, http_check(http_server, "/ok", json_len={"field": "instances", "equals": 3})
    )
    assert not length["ok"] and "2 instances" in length["observed"]


def test_command_checks_exit_code_and_patterns():
    lab = loopback_lab()
    base = {"name": "cmd", "kind": "command", "why": "w", "on": [{"label": "host"}], "rc": 0}
    assert GRADE.grade_one(lab, {**base, "run": "echo one", "match": "^one$", "no_match": None})["ok"]
    assert not GRADE.grade_one(lab, {**base, "run": "echo two", "match": "^one$", "no_match": None})["ok"]
    assert not GRADE.grade_one(lab, {**base, "run": "echo DROP", "match": None, "no_match": "DROP"})["ok"]
    failed = GRADE.grade_one(lab, {**base, "run": "exit 3", "match": None, "no_match": None})
    assert not failed["ok"] and "exit 3" in failed["observed"]


def test_the_marker_tells_a_redeploy_from_a_repair(tmp_path):
    marked = tmp_path / "rendered"
    marked.write_text("#!/bin/bash\n# shoplab-exercise x 42\n")
    check = {"name": "m", "kind": "marker", "why": "w", "file": str(marked), "text": "shoplab-exercise x 42"}
    assert GRADE.grade_one(loopback_lab(), check)["ok"]
    marked.write_text("#!/bin/bash\n")
    result = GRADE.grade_one(loopback_lab(), check)
    assert not result["ok"] and "redeployed, not repaired" in result["observed"]


def test_the_summary_counts_names_the_first_failure_and_writes_junit(listener):
    plan = {
        "lab": {"mode": "netns", "subnets": ["127.0.0.0/8"]},
        "meta": {"exercise": "demo", "host": "h", "started": "t"},
        "checks": [
            {**tcp_check(listener, "open"), "name": "first"},
            {**tcp_check(listener, "closed"), "name": "second"},
            {**tcp_check(free_port(), "closed"), "name": "third"},
        ],
    }
    summary = GRADE.grade(plan)
    assert (summary["passed"], summary["failed"], summary["total"]) == (2, 1, 3)
    assert summary["first_failure"] == "second"
    assert summary["lines"][-1] == "2 passed, 1 failed"
    assert summary["lines"][1].startswith("FAIL second: ")
    suite = ET.fromstring(summary["junit"])
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None] == ["second"]
