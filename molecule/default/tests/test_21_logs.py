"""Where the services' lines go: access lines to a file per instance, rotated; the rest to the journal."""

from __future__ import annotations

import json
import time

from labdata import INSTANCES, TESTINFRA_HOSTS, instance
from labtest import unknown_product_path
from opsnetns import playbook, tail

testinfra_hosts = TESTINFRA_HOSTS

LOG_DIR = "/var/log/shoplab"  # netns_services_log_dir's default
STATE = "/var/lib/shoplab-logrotate/status"


def access_log(name: str) -> str:
    return f"{LOG_DIR}/{name}.access.log"


def wait_for_line(lab, path: str, text: str, timeout: float = 15) -> str:
    """The file's line holding `text`: lines are buffered and written every second."""
    deadline = time.monotonic() + timeout
    while True:
        result = lab.run(f"grep -F -h -- {text!r} {path}")
        if result.rc == 0:
            return result.stdout.strip().splitlines()[-1]
        assert time.monotonic() < deadline, f"no line with {text!r} in {path}"
        time.sleep(0.5)


def request_with_a_marker(lab) -> str:
    path = unknown_product_path()
    status, headers, _ = lab.http("GET", path)
    assert status == 404
    assert headers.get("x-upstream-instance", "").startswith("product-")
    return path


def test_every_app_instance_has_its_access_log(lab):
    for inst in (i for i in INSTANCES if i["kind"] == "app"):
        log = lab.host.file(access_log(inst["name"]))
        assert log.is_file and log.user == "root", inst["name"]
        assert lab.host.file(LOG_DIR).mode == 0o750


def test_a_request_is_logged_by_the_gateway_and_a_product_in_their_files_not_the_journal(lab):
    path = request_with_a_marker(lab)
    line = json.loads(wait_for_line(lab, access_log(instance("gateway")["name"]), path))
    assert (line["logger"], line["method"], line["status"]) == ("shoplab.access", "GET", 404)
    products = " ".join(access_log(i["name"]) for i in INSTANCES if i["service"] == "product")
    assert json.loads(wait_for_line(lab, products, path))["service"] == "product"
    journal = lab.check("journalctl -q --no-pager -o cat -u 'shoplab-*' --since -10min")
    assert path not in journal
    assert "shoplab.access" not in journal


def test_the_services_own_lines_still_reach_the_journal(lab):
    journal = lab.check(f"journalctl -q --no-pager -o cat -u shoplab-{instance('gateway')['name']}.service")
    assert "Booting worker" in journal  # gunicorn's stderr


def test_the_rotation_timer_runs_and_its_service_succeeds(lab):
    assert lab.host.service("shoplab-logrotate.timer").is_running
    assert lab.host.service("shoplab-logrotate.timer").is_enabled
    lab.check("systemctl start shoplab-logrotate.service")
    assert lab.check("systemctl show -P Result shoplab-logrotate.service").strip() == "success"


def test_a_rotated_log_keeps_its_lines_and_the_live_file_starts_clean(lab):
    gateway = access_log(instance("gateway")["name"])
    before = request_with_a_marker(lab)
    wait_for_line(lab, gateway, before)
    lab.check(f"logrotate --force --state {STATE} /etc/shoplab/logrotate.conf")
    assert before in lab.check(f"zcat {gateway}.1.gz")
    after = request_with_a_marker(lab)
    wait_for_line(lab, gateway, after)
    # copytruncate with a writer that did not open the file in append mode leaves the writer at its old
    # offset: the file would then start with a hole of NUL bytes.
    assert lab.check(f"head -c 1 {gateway}") == "{"
    assert lab.run(f"grep -c -P '\\x00' {gateway}").stdout.strip() == "0"


def test_a_bad_access_log_target_is_refused_and_changes_nothing(lab):
    unit = f"/etc/systemd/system/shoplab-{instance('gateway')['name']}.service"
    before = lab.host.file(unit).md5sum
    # The whole site.yml, as users run it: its preflight puts the host into lab_netns.
    result = playbook("../site.yml", "-e", "netns_services_access_log=syslog")
    assert result.returncode != 0
    # The role's argument_specs refuse it first; its preflight assert says the same when those are skipped.
    assert "netns_services_access_log must be one of" in result.stdout, tail(result)
    assert "syslog" in result.stdout.partition("netns_services_access_log must be one of")[2][:80]
    assert lab.host.file(unit).md5sum == before
    assert lab.host.service(f"shoplab-{instance('gateway')['name']}.service").is_running
