#!/usr/bin/env python3
"""Grade a running Shoplab lab: run the probes of a plan on the lab host and say what is wrong.

Runs on the lab host (Python's standard library only), read-only towards the lab: it opens TCP
connections and HTTP requests from the host or from inside an instance's network namespace
(`ip netns exec` in netns mode, `nsenter --net` into a container in docker mode), runs the
exercise's commands, and reads unit and container states. Every probe goes to a lab address only:
from the host, after checking that the route leaves through a lab bridge; from inside the lab, to
an address of a lab subnet.

    grade.py PLAN.json            # prints the result as JSON on stdout

The plan (rendered by plugins/filter/shoplab_exercises.py) has `checks` (probes in order), `lab`
(mode, subnets, bridges or Docker networks) and `meta` (exercise, host, started). Each result says
what was expected, what was seen and why it matters; a check with a `within` window is retried until
it passes or the window closes. The first failing check is the one to fix first.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from xml.etree import ElementTree as ET

COMMAND_TIMEOUT = 20
BODY_LIMIT = 65536

# Runs inside a namespace: connect to every (label, address, port) in parallel; prints JSON, one
# [target, open, detail, seconds] per target. It stays a string of this file (Ansible's script module
# copies grade.py alone to the lab host); molecule/default/tests/test_30_isolation.py reads it from here.
TCP_PROBE = r"""
import json, socket, sys, time
from concurrent.futures import ThreadPoolExecutor
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def probe(t):
    start = time.monotonic()
    try:
        socket.create_connection((t[1], t[2]), timeout=timeout).close()
        found = [True, "open"]
    except socket.timeout:
        found = [False, "timed out"]
    except OSError as exc:
        found = [False, exc.strerror or type(exc).__name__]
    return [t, *found, time.monotonic() - start]
with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""

# Runs inside a namespace: one HTTP request; JSON out.
HTTP_PROBE = r"""
import http.client, json, sys
spec = json.loads(sys.argv[1])
try:
    conn = http.client.HTTPConnection(spec["address"], spec["port"], timeout=spec["timeout"])
    body = json.dumps(spec["body"]) if spec["body"] is not None else None
    headers = dict(spec["headers"])
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    conn.request(spec["method"], spec["path"], body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read(spec["limit"]).decode("utf-8", "replace")
    print(json.dumps({"status": resp.status, "headers": {k.lower(): v for k, v in resp.getheaders()},
                      "body": data}))
except Exception as exc:
    print(json.dumps({"error": str(exc) or type(exc).__name__}))
"""


class Refused(Exception):
    """A probe the grader will not send (not a lab address): the check fails with this reason."""


def run(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout:.0f}s")
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


class Lab:
    """The lab host's view of the lab: how to enter an instance, where its addresses are."""

    def __init__(self, spec: dict):
        self.mode = spec["mode"]
        self.subnets = [ipaddress.ip_network(s) for s in spec["subnets"]]
        self.bridges = set(spec.get("bridges", []))
        self.containers: dict[str, dict] = {}
        if self.mode == "docker":
            self._inspect_docker(spec.get("docker_networks", []))

    def _inspect_docker(self, networks: list[str]) -> None:
        for network in networks:
            found = run(["docker", "network", "inspect", network])
            if found.returncode == 0:
                data = json.loads(found.stdout)[0]
                self.bridges.add(f"br-{data['Id'][:12]}")
        self.refresh_containers()

    def refresh_containers(self) -> None:
        """Every container's pid, state, health and addresses (replaced whole: other threads read it)."""
        ids = run(["docker", "ps", "-aq"]).stdout.split()
        found = json.loads(run(["docker", "inspect", *ids]).stdout or "[]") if ids else []
        containers = {}
        for container in found:
            state = container["State"]
            containers[container["Name"].lstrip("/")] = {
                "pid": state.get("Pid", 0),
                "status": state.get("Status", "?"),
                "health": (state.get("Health") or {}).get("Status", "none"),
                "addresses": [
                    n["IPAddress"]
                    for n in container["NetworkSettings"]["Networks"].values()
                    if n["IPAddress"]
                ],
            }
        self.containers = containers

    def prefix(self, endpoint: dict) -> list[str]:
        """The command prefix that runs a program inside the endpoint's network namespace."""
        if "netns" in endpoint:
            return ["ip", "netns", "exec", endpoint["netns"]]
        if "container" in endpoint:
            found = self.containers.get(endpoint["container"])
            if not found or not found["pid"]:
                raise Refused(f"container {endpoint['container']} is not running")
            return ["nsenter", f"--net=/proc/{found['pid']}/ns/net"]
        return []

    def addresses(self, target: dict) -> list[str]:
        if "addresses" in target:
            return target["addresses"]
        found = self.containers.get(target["container"])
        if not found or not found["addresses"]:
            raise Refused(f"container {target['container']} has no address (not running?)")
        return found["addresses"]

    def guard(self, source: dict, address: str) -> None:
        """Refuse any destination that is not the lab's: from the host, the route must use a lab
        bridge (or loopback); from inside, the address must be in a lab subnet."""
        ip = ipaddress.ip_address(address)
        if ip.is_loopback and source.get("label") == "host":
            return
        if not any(ip in net for net in self.subnets):
            raise Refused(f"{address} is not in a lab subnet")
        if source.get("label") == "host":
            route = run(["ip", "-j", "route", "get", address])
            dev = json.loads(route.stdout or "[{}]")[0].get("dev", "") if route.returncode == 0 else ""
            if dev not in self.bridges:
                raise Refused(f"the route to {address} leaves through {dev or 'nothing'}, not a lab bridge")


def in_namespace(lab: Lab, endpoint: dict, script: str, *args: str, timeout: float) -> object:
    done = run([*lab.prefix(endpoint), sys.executable, "-c", script, *args], timeout=timeout)
    if done.returncode != 0:
        raise Refused(f"could not run a probe in {endpoint.get('label')}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


# ---- one function per kind: (ok, expected, observed) -------------------------------------------


def check_tcp(lab: Lab, check: dict) -> tuple[bool, str, str]:
    expect_open = check["expect"] == "open"
    expected = (
        f"{check['sources_label']} reaches {check['targets_label']}"
        if expect_open
        else f"{check['sources_label']} -> {check['targets_label']} stays closed"
    )
    problems, seen = [], []
    for source in check["sources"]:
        cells = []
        # An instance connecting to itself never leaves its namespace or container: not a flow.
        for target in (t for t in check["targets"] if t["label"] != source["label"]):
            try:
                for address in lab.addresses(target):
                    lab.guard(source, address)
                    cells.append([target["label"], address, target["port"]])
            except Refused as exc:
                problems.append(f"{source['label']} -> {target['label']}: {exc}")
        if not cells:
            continue
        try:
            results = in_namespace(
                lab,
                source,
                TCP_PROBE,
                json.dumps(cells),
                str(check["timeout"]),
                timeout=check["timeout"] + 15,
            )
        except Refused as exc:
            problems.append(str(exc))
            continue
        # docker: a target with several addresses is open when any of them is.
        per_target: dict[str, list] = {}
        for (label, address, port), is_open, detail, _seconds in results:
            per_target.setdefault(label, []).append((address, port, is_open, detail))
        for label, tries in per_target.items():
            opened = [t for t in tries if t[2]]
            where = ", ".join(f"{a}:{p}" for a, p, _o, _d in tries)
            if expect_open and not opened:
                detail = "; ".join(sorted({d for _a, _p, _o, d in tries}))
                problems.append(f"{source['label']} cannot reach {label} {where}: {detail}")
            elif not expect_open and opened:
                problems.append(f"{source['label']} -> {label} {where} must stay closed: it is open")
            else:
                seen.append(f"{source['label']} -> {label}: {'open' if opened else 'closed'}")
    if problems:
        return False, expected, "; ".join(problems)
    state = "open" if expect_open else "closed, as it must be"
    return (
        True,
        expected,
        f"{check['sources_label']} -> {check['targets_label']}: {len(seen)} connection(s) {state}",
    )


def check_http(lab: Lab, check: dict) -> tuple[bool, str, str]:
    target, source = check["target"], check["source"]
    expected = f"{check['method']} {check['path']} -> {'/'.join(map(str, check['status']))}"
    if check.get("match"):
        expected += f", body matching /{check['match']}/"
    address = lab.addresses(target)[0]
    lab.guard(source, address)
    headers = dict(check["headers"])
    if check["method"] == "POST":
        headers.setdefault("Idempotency-Key", f"grader-{uuid.uuid4()}")
    spec = {
        "address": address,
        "port": target["port"],
        "method": check["method"],
        "path": check["path"],
        "body": check["body"],
        "headers": headers,
        "timeout": check["timeout"],
        "limit": BODY_LIMIT,
    }
    answer = in_namespace(lab, source, HTTP_PROBE, json.dumps(spec), timeout=check["timeout"] + 15)
    where = f"{source['label']} -> {target['label']} {address}:{target['port']}"
    if "error" in answer:
        return False, expected, f"{where}: {answer['error']}"
    observed = f"{where}: {answer['status']}"
    problem = _answer_problem(check, answer)
    if problem:
        return False, expected + problem[0], observed + problem[1]
    if check.get("json_len"):
        field = check["json_len"]["field"]
        observed += f", {len(json.loads(answer['body'])[field])} {field}"
    return True, expected, observed


def _answer_problem(check: dict, answer: dict) -> tuple[str, str] | None:
    """What is wrong with an HTTP answer: (more of what was expected, what was seen), or None."""
    if answer["status"] not in check["status"]:
        title = _problem_title(answer["body"])
        return "", f" ({title})" if title else ""
    if check.get("match") and not re.search(check["match"], answer["body"]):
        return "", f", body without /{check['match']}/: {answer['body'][:120]!r}"
    for header, pattern in check["header_match"].items():
        value = answer["headers"].get(header.lower(), "")
        if not re.fullmatch(pattern, value):
            return f", {header}: /{pattern}/", f", {header}: {value or '(none)'}"
    if check.get("json_len"):
        field, want = check["json_len"]["field"], check["json_len"]["equals"]
        try:
            have = len(json.loads(answer["body"])[field])
        except (ValueError, KeyError, TypeError):
            return f", {want} {field}", f", no list '{field}' in the answer"
        if have != want:
            return f", {want} {field}", f", {have} {field}"
    return None


def _problem_title(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    return str(data.get("detail") or data.get("title") or "")[:160] if isinstance(data, dict) else ""


def check_command(lab: Lab, check: dict) -> tuple[bool, str, str]:
    expected = f"`{check['run']}` exits {check['rc']}"
    if check.get("match"):
        expected += f" printing /{check['match']}/"
    if check.get("no_match"):
        expected += f" and never /{check['no_match']}/"
    outcomes = []
    for endpoint in check["on"]:
        if "container" in endpoint:
            argv = ["docker", "exec", endpoint["container"], "sh", "-c", check["run"]]
        else:
            argv = [*lab.prefix(endpoint), "sh", "-c", check["run"]]
        done = run(argv)
        out = (done.stdout + done.stderr).strip()
        short = out.replace("\n", " ")[:200]
        where = endpoint["label"]
        if done.returncode != check["rc"]:
            return False, expected, f"{where}: exit {done.returncode}: {short or '(no output)'}"
        if check.get("match") and not re.search(check["match"], out, re.M):
            return False, expected, f"{where}: printed {short or '(nothing)'}"
        if check.get("no_match") and re.search(check["no_match"], out, re.M):
            return False, expected, f"{where}: printed {short}"
        outcomes.append(f"{where}: exit {done.returncode}")
    return True, expected, "; ".join(outcomes)


UNIT_SETTLE_SECONDS = 2


def unit_properties(unit: str) -> dict:
    done = run(["systemctl", "show", unit, "-p", "ActiveState,SubState,Result,NRestarts"])
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def check_unit(lab: Lab, check: dict) -> tuple[bool, str, str]:
    """A unit in a crash loop is `active` for moments: it counts as running only when it stays in the
    state and restarts no more over a short settle time."""
    expected = f"{check['unit']} {check['state']}, not restarting"
    before = unit_properties(check["unit"])
    after = before
    if before.get("ActiveState") == check["state"]:
        time.sleep(UNIT_SETTLE_SECONDS)
        after = unit_properties(check["unit"])
    state = after.get("ActiveState", "unknown")
    restarts = int(after.get("NRestarts") or 0) - int(before.get("NRestarts") or 0)
    observed = f"{state} ({after.get('SubState', '?')}, result {after.get('Result', '?')}"
    observed += f", {after.get('NRestarts', '0')} restarts in all)"
    return state == check["state"] and restarts == 0, expected, observed


def check_container(lab: Lab, check: dict) -> tuple[bool, str, str]:
    expected = f"every {check['compose_service']} container running and {check['health']}"
    seen = []
    ok = True
    for name in check["containers"]:
        found = lab.containers.get(name)
        if not found:
            ok = False
            seen.append(f"{name} missing")
            continue
        good = found["status"] == "running" and found["health"] in (check["health"], "none")
        ok = ok and good
        seen.append(f"{name} {found['status']}, {found['health']}")
    return ok, expected, "; ".join(seen)


def check_marker(lab: Lab, check: dict) -> tuple[bool, str, str]:
    expected = f"the exercise's marker still in {check['file']} (repaired, not redeployed)"
    try:
        with open(check["file"], encoding="utf-8") as handle:
            present = check["text"] in handle.read()
    except OSError as exc:
        return False, expected, f"the lab was redeployed, not repaired: {check['file']}: {exc.strerror}"
    if not present:
        return False, expected, f"the lab was redeployed, not repaired: a deploy rewrote {check['file']}"
    return True, expected, "marker present"


def check_flow_listed(lab: Lab, check: dict) -> tuple[bool, str, str]:
    """Decided on the controller (the topology data lives there); this only reports it."""
    expected = f"group_vars/all/topology.yml lists the flow {check['listed_flow']} (shoplab_allowed_flows)"
    if check["listed"]:
        return True, expected, "listed"
    return False, expected, "not listed: not part of the lab's data (a rule added by hand does not count)"


KINDS = {
    "tcp": check_tcp,
    "http": check_http,
    "command": check_command,
    "unit": check_unit,
    "container": check_container,
    "marker": check_marker,
    "flow_listed": check_flow_listed,
}


def label_tcp(check: dict) -> None:
    def names(endpoints):
        labels = [e["label"] for e in endpoints]
        return labels[0] if len(labels) == 1 else f"{labels[0].rsplit('-', 1)[0]} ({len(labels)} instances)"

    check["sources_label"] = names(check["sources"])
    check["targets_label"] = names(check["targets"])


def grade_one(lab: Lab, check: dict) -> dict:
    """Run one check, retried within its window; the result as the reports need it."""
    if check["kind"] == "tcp":
        label_tcp(check)
    started = time.monotonic()
    deadline = started + float(check.get("within", 0))
    attempts = 0
    while True:
        attempts += 1
        try:
            ok, expected, observed = KINDS[check["kind"]](lab, check)
        except Refused as exc:
            ok, expected, observed = False, "a probe of the lab", f"refused: {exc}"
        if ok or time.monotonic() + float(check.get("interval", 1)) > deadline:
            break
        time.sleep(float(check.get("interval", 1)))
        if check["kind"] == "container":
            lab.refresh_containers()
    return {
        "name": check["name"],
        "kind": check["kind"],
        "must_fail": check.get("expect") == "closed",
        "baseline": check.get("baseline", False),
        "ok": ok,
        "expected": expected,
        "observed": observed,
        "why": check["why"],
        "attempts": attempts,
        "seconds": round(time.monotonic() - started, 2),
    }


def grade(plan: dict) -> dict:
    lab = Lab(plan["lab"])
    checks = plan["checks"]
    # Independent probes: run them side by side; results keep the plan's order.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: grade_one(lab, c), checks))
    failed = [r for r in results if not r["ok"]]
    summary = {
        **plan.get("meta", {}),
        "mode": lab.mode,
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "total": len(results),
        "first_failure": failed[0]["name"] if failed else None,
        "checks": results,
    }
    summary["lines"] = report_lines(summary)
    summary["junit"] = junit_xml(summary)
    return summary


def report_lines(summary: dict) -> list[str]:
    lines = []
    for r in summary["checks"]:
        if r["ok"]:
            lines.append(f"PASS {r['name']}: {r['observed']}")
        else:
            lines.append(f"FAIL {r['name']}: {r['observed']} (expected: {r['expected']}; why: {r['why']})")
    lines.append(f"{summary['passed']} passed, {summary['failed']} failed")
    return lines


def junit_xml(summary: dict) -> str:
    suite = ET.Element(
        "testsuite",
        name=f"shoplab.{summary.get('exercise') or 'clean-lab'}",
        tests=str(summary["total"]),
        failures=str(summary["failed"]),
        hostname=str(summary.get("host", "")),
        timestamp=str(summary.get("started", "")),
    )
    for r in summary["checks"]:
        case = ET.SubElement(
            suite, "testcase", classname=f"shoplab.{r['kind']}", name=r["name"], time=str(r["seconds"])
        )
        if not r["ok"]:
            failure = ET.SubElement(case, "failure", message=r["observed"][:500])
            failure.text = f"expected: {r['expected']}\nobserved: {r['observed']}\nwhy: {r['why']}"
    return ET.tostring(suite, encoding="unicode")


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        plan = json.load(handle)
    print(json.dumps(grade(plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
