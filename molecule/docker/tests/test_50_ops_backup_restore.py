"""Backup and restore (playbooks/backup.yml, playbooks/restore.yml) against the docker lab: a backup
restores to exactly the data it was taken from, and a missing, garbage, truncated or mis-checksummed
file is refused with a clear message while the live data stays as it was."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
from opslib import digest, playbook, tail


@pytest.fixture(scope="module")
def backup(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("backups")
    before = digest()
    result = playbook("backup.yml", "-e", f"lab_backup_dir={folder}")
    assert result.returncode == 0, tail(result)
    dumps = sorted((folder / "docker").glob("shoplab-docker-*.dump"))
    assert len(dumps) == 1, dumps
    return dumps[0], before


def test_backup_has_checksum_and_manifest(backup):
    dump, before = backup
    assert dump.read_bytes()[:5] == b"PGDMP"  # custom format
    recorded, name = (dump.parent / f"{dump.name}.sha256").read_text().split()
    assert name == dump.name
    assert recorded == hashlib.sha256(dump.read_bytes()).hexdigest()
    manifest = json.loads((dump.parent / f"{dump.name}.json").read_text())
    assert manifest["mode"] == "docker" and manifest["sha256"] == recorded
    # Taken from a test restore of the dump: equal to the live data at backup time.
    assert manifest["tables"] == before


def test_restore_drops_a_later_order_and_equals_the_backup(backup, gateway_url):
    dump, before = backup
    products = requests.get(f"{gateway_url}/api/products", timeout=10).json()["items"]
    created = requests.post(
        f"{gateway_url}/api/orders",
        json={"items": [{"product_id": products[0]["id"], "quantity": 1}]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    assert digest() != before

    result = playbook("restore.yml", "-e", f"backup_file={dump}")
    assert result.returncode == 0, tail(result)
    assert digest() == before
    assert requests.get(f"{gateway_url}/api/orders/{order_id}", timeout=10).status_code == 404
    # The shop still works on its pooled connections, with the restored stock (cache emptied).
    listing = requests.get(f"{gateway_url}/api/products/{products[0]['id']}", timeout=10)
    assert listing.status_code == 200
    assert listing.json()["stock"] == products[0]["stock"]


def _bad_copy(dump, folder, kind: str):
    data = dump.read_bytes()
    target = folder / f"{kind}.dump"
    if kind == "missing":
        return target, "not found"
    if kind == "truncated":  # listing may still work; then the test restore finds the data missing
        target.write_bytes(data[: len(data) * 2 // 3])
        expected = "restore"
    elif kind == "garbage":
        target.write_bytes(bytes(range(256)) * 20)
        expected = "not a PostgreSQL custom-format archive"
    else:  # a good dump whose checksum file does not match
        target.write_bytes(data)
        expected = "corrupt or not the file that was backed up"
    digest_of = hashlib.sha256(target.read_bytes()).hexdigest() if kind != "checksum" else "0" * 64
    (folder / f"{kind}.dump.sha256").write_text(f"{digest_of}  {target.name}\n")
    return target, expected


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "checksum"])
def test_bad_file_fails_clearly_and_changes_nothing(backup, tmp_path, gateway_url, kind):
    dump, _ = backup
    # Make the live data differ from the backup, so a partial restore would show.
    products = requests.get(f"{gateway_url}/api/products", timeout=10).json()["items"]
    created = requests.post(
        f"{gateway_url}/api/orders",
        json={"items": [{"product_id": products[1]["id"], "quantity": 1}]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    before = digest()
    target, expected = _bad_copy(dump, tmp_path, kind)

    result = playbook("restore.yml", "-e", f"backup_file={target}")
    assert result.returncode != 0
    assert expected in result.stdout, tail(result)
    assert "Nothing was changed" in result.stdout or "was not touched" in result.stdout, tail(result)
    assert digest() == before


def test_refuses_bad_input():
    for extra, expected in (
        (["-e", "mode=bogus"], "mode must be 'netns' or 'docker'"),
        ([], "Name the backup to restore"),
    ):
        result = playbook("restore.yml", *extra)
        assert result.returncode != 0
        assert expected in result.stdout, tail(result)
