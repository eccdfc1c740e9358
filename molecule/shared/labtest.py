"""What both Molecule scenarios' tests share: the topology data (through the project's own filter
plugin, the single source of truth), the database digest lab_backup computes, and running one of the
project's playbooks with its output made searchable.

On pytest's pythonpath (the project's pyproject.toml), next to plugins/filter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import shoplab_topology as FILTERS
import yaml

__all__ = [
    "FILTERS",
    "PROJECT_DIR",
    "TCP_PROBE",
    "TOKEN_FILES",
    "TOPOLOGY",
    "curl_command",
    "digest_script",
    "order_and_read_back",
    "parse_curl_response",
    "parse_digest",
    "playbook",
    "round_robin_upstreams",
    "tail",
]

PROJECT_DIR = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
TOPOLOGY = yaml.safe_load((PROJECT_DIR / "group_vars" / "all" / "topology.yml").read_text())
# Where each mode keeps the lab's tokens on the lab host: {mode: {registry: path, operator: path}}.
_MAIN = yaml.safe_load((PROJECT_DIR / "group_vars" / "all" / "main.yml").read_text())
TOKEN_FILES = _MAIN["shoplab_token_files"]

# The tables the digest covers: lab_backup's own list, so a test compares what a backup's manifest does.
TABLES = yaml.safe_load((PROJECT_DIR / "roles" / "lab_backup" / "defaults" / "main.yml").read_text())[
    "lab_backup_tables"
]


def digest_script(psql: str) -> str:
    """A bash script printing `table|rows|md5` per table, the digest roles/lab_backup/tasks/digest.yml
    computes (`psql`: the command that reaches the database). As there, the rows are streamed
    (FETCH_COUNT) into md5sum rather than joined in PostgreSQL: one string of a whole table cost a backend
    ~300 MB with half a million orders (benchmark runs leave them), and the container's 512 MB limit
    killed it."""
    lines = ["set -euo pipefail"]
    for table in TABLES:
        lines.append(
            f"{psql} -X -q -v ON_ERROR_STOP=1 -tA -v FETCH_COUNT=1000"
            " -c 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'"
            f" -c 'SELECT count(*) FROM {table}'"
            f" -c 'SELECT t::text FROM {table} t ORDER BY t::text' -c COMMIT"
            f" | {{ read -r rows; printf '%s|%s|' {table} \"$rows\"; head -c -1 | md5sum | cut -d' ' -f1; }}"
        )
    return "\n".join(lines)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unknown_product_path() -> str:
    """A product URL path no product has (a 404), different on every call: a marker to find in logs.
    The id stays within PostgreSQL's integer, so the product service looks it up."""
    return f"/api/products/{1_500_000_000 + int.from_bytes(os.urandom(4), 'big') % 600_000_000}"


def parse_digest(out: str) -> dict[str, str]:
    """digest_script's output -> {table: 'rows|md5'}."""
    return {line.split("|", 1)[0]: line.split("|", 1)[1] for line in out.splitlines() if line}


def _plain(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The output as one line of plain words: no colours (Molecule forces them), no YAML line wrapping
    or quote doubling, so a test can look for a whole message. Under Molecule's configuration Ansible
    prints a failed task's result on stderr, so both streams are searched."""
    text = ANSI.sub("", result.stdout + "\n" + result.stderr).replace("\\n", " ").replace("''", "'")
    result.stdout = " ".join(text.split())
    return result


# A lab VM under TCG runs each Ansible task several times slower than a lab-host container (an idempotent
# converge: 11 minutes against about 2), and slower still beside other work: the same playbooks get
# this many times their time.
TIMEOUT_FACTOR = 4 if os.environ.get("SHOPLAB_LAB_HOST_KIND") == "vm" else 1


def playbook(
    path: str | Path, mode: str, *extra: str, inventory: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """ansible-playbook <path> -e mode=<mode> … (path relative to the project), with the project's
    configuration unless an inventory (a Molecule scenario's) is given. The output comes back plain.
    `timeout`: for a lab-host container (TIMEOUT_FACTOR times it for a lab VM)."""
    command = ["ansible-playbook", str(PROJECT_DIR / path), "-e", f"mode={mode}"]
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    if inventory:
        command += ["--inventory", inventory]
    else:
        # The project's own configuration, not the one Molecule exports for its scenario.
        command += ["--inventory", str(PROJECT_DIR / "inventory" / "hosts.yml")]
        env["ANSIBLE_CONFIG"] = str(PROJECT_DIR / "ansible.cfg")
        env["ANSIBLE_FILTER_PLUGINS"] = str(PROJECT_DIR / "plugins" / "filter")
    command += extra
    done = subprocess.run(
        command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout * TIMEOUT_FACTOR,
        check=False,
    )  # fmt: skip
    return _plain(done)


def tail(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-4000:] + result.stderr[-2000:]


def _tcp_probe() -> str:
    """The exercise grader's TCP probe (a script run with python3 -c: targets as JSON, a timeout), which the
    isolation tests run in each namespace: what a student's check and the tests probe with is one script."""
    path = PROJECT_DIR / "roles" / "lab_exercise" / "files" / "grade.py"
    spec = importlib.util.spec_from_file_location("shoplab_grade", path)
    grade = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grade)
    return grade.TCP_PROBE


TCP_PROBE = _tcp_probe()


def curl_command(
    url: str, method: str, body: dict | None, operator: bool, max_time: float = 10, *, mode: str = "netns"
) -> str:
    """The shell command a lab host runs for one request to the gateway, headers included in its output;
    `operator`: with the lab's operator token (`mode`'s file), read on the lab host and handed to curl on its
    stdin, so it is never on a command line or in the test's output."""
    data = f"-H 'Content-Type: application/json' --data {shlex.quote(json.dumps(body))}" if body else ""
    curl = f"curl -sS -m {max_time:g} -X {method} -D - {data} {shlex.quote(url)}"
    if operator:
        token_file = shlex.quote(TOKEN_FILES[mode]["operator"])
        curl = f"printf 'Authorization: Bearer %s\\n' \"$(cat {token_file})\" | {curl} -H @-"
    return curl


def parse_curl_response(out: str) -> tuple[int, dict, str]:
    """curl -D - output: (status, headers lower-cased, body)."""
    head, _, payload = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def order_and_read_back(http) -> dict:
    """One order of one item in stock, through the gateway (`http(method, path, body)` gives (status,
    headers, body) of one request), answered by an order instance and read back; the order."""
    _, _, body = http("GET", "/api/products", None)
    product = next(p for p in json.loads(body)["items"] if p["stock"] > 0)
    status, headers, body = http(
        "POST", "/api/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}
    )
    assert status == 201, body
    assert headers.get("x-upstream-instance", "").startswith("order-")
    order = json.loads(body)
    status, _, body = http("GET", f"/api/orders/{order['id']}", None)
    assert status == 200, body
    assert json.loads(body)["id"] == order["id"]
    return order


def round_robin_upstreams(http, expected: set[str]) -> set[str]:
    """The instances that answered product lists through the gateway (its X-Upstream-Instance), asked up to
    six rounds of the expected instances' number, and no more once every expected one has answered."""
    seen = set()
    for _ in range(6 * len(expected)):
        status, headers, _ = http("GET", "/api/products?page=1", None)
        assert status == 200
        seen.add(headers.get("x-upstream-instance"))
        if seen >= expected:
            break
    return seen
