"""Backup and restore (playbooks/backup.yml, restore.yml) on the netns lab: a restore brings back
exactly the backed-up data; a missing, garbage or truncated file is refused and changes nothing."""

from __future__ import annotations

import hashlib
import json

import pytest
from opsnetns import OPS_HOSTS, digest, playbook, tail

testinfra_hosts = OPS_HOSTS


@pytest.fixture(scope="module")
def backup(lab, tmp_path_factory):
    folder = tmp_path_factory.mktemp("backups")
    before = digest(lab)
    result = playbook("backup.yml", "-e", f"lab_backup_dir={folder}")
    assert result.returncode == 0, tail(result)
    (dump,) = sorted((folder / "netns").glob("shoplab-netns-*.dump"))
    return dump, before


def new_order(lab) -> int:
    _, _, body = lab.http("GET", "/api/products")
    product = next(p for p in json.loads(body)["items"] if p["stock"] > 0)
    status, _, body = lab.http(
        "POST", "/api/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}
    )
    assert status == 201, body
    return json.loads(body)["id"]


def test_backup_checksum_and_manifest(backup):
    dump, before = backup
    assert dump.read_bytes()[:5] == b"PGDMP"
    recorded, name = (dump.parent / f"{dump.name}.sha256").read_text().split()
    assert name == dump.name and recorded == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert json.loads((dump.parent / f"{dump.name}.json").read_text())["tables"] == before


def test_restore_drops_a_later_order(lab, backup):
    dump, before = backup
    order_id = new_order(lab)
    assert digest(lab) != before
    result = playbook("restore.yml", "-e", f"backup_file={dump}")
    assert result.returncode == 0, tail(result)
    assert digest(lab) == before
    status, _, _ = lab.http("GET", f"/api/orders/{order_id}")
    assert status == 404


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated"])
def test_bad_file_is_refused_and_changes_nothing(lab, backup, tmp_path, kind):
    dump, _ = backup
    new_order(lab)  # the live data now differs from the backup
    before = digest(lab)
    target = tmp_path / f"{kind}.dump"
    expected = {
        "missing": "not found",
        "garbage": "not a PostgreSQL custom-format archive",
        # Cut inside the data: pg_restore --list may already stop (a dump written to a pipe has no
        # offsets, so listing reads through the data), or only the test restore finds it.
        "truncated": "restore",
    }[kind]
    if kind != "missing":
        data = dump.read_bytes()
        target.write_bytes(bytes(range(256)) * 20 if kind == "garbage" else data[: len(data) * 2 // 3])
        (tmp_path / f"{kind}.dump.sha256").write_text(
            f"{hashlib.sha256(target.read_bytes()).hexdigest()}  x\n"
        )
    result = playbook("restore.yml", "-e", f"backup_file={target}")
    assert result.returncode != 0
    assert expected in result.stdout, tail(result)
    assert "Nothing was changed" in result.stdout or "was not touched" in result.stdout, tail(result)
    assert digest(lab) == before
