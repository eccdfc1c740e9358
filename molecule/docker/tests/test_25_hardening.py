"""Hardening from `docker inspect` (read-only, no capabilities, no new privileges, not root, limits,
restart), CPU limits and scheduling, bad limits refused, the database password and the lab's tokens only
in secret files, and PostgreSQL's roles: the application's is no superuser (asked through the services'
own login), the superuser is not reachable with the application's password, and orders are still
written."""

from __future__ import annotations

import json

import labtest
import pytest
import requests
from conftest import SECRET_FILE, by_service, docker, lab_containers
from labhost import LAB

HARDENING = ["read_only", "cap_drop", "no_new_privileges", "non_root", "limits", "restart"]


@pytest.mark.parametrize("check", HARDENING)
def test_hardening_from_docker_inspect(containers, check):
    wrong = []
    for container in containers:
        host = container["HostConfig"]
        name = container["Name"].lstrip("/")
        if check == "read_only" and not host["ReadonlyRootfs"]:
            wrong.append(name)
        if check == "cap_drop" and (
            [c.upper() for c in host.get("CapDrop") or []] not in (["ALL"], ["CAP_ALL"]) or host.get("CapAdd")
        ):
            wrong.append(f"{name}: drop {host.get('CapDrop')} add {host.get('CapAdd')}")
        if check == "no_new_privileges" and not any(
            opt.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges")
            for opt in host.get("SecurityOpt") or []
        ):
            wrong.append(f"{name}: {host.get('SecurityOpt')}")
        if check == "non_root":
            user = container["Config"]["User"].split(":")[0]
            if user in ("", "0", "root"):
                wrong.append(f"{name}: user {user!r}")
        limited = host["Memory"] > 0 and host["NanoCpus"] > 0 and (host["PidsLimit"] or 0) > 0
        if check == "limits" and not limited:
            wrong.append(f"{name}: mem {host['Memory']} cpu {host['NanoCpus']} pids {host['PidsLimit']}")
        if check == "restart" and host["RestartPolicy"]["Name"] in ("", "no"):
            wrong.append(f"{name}: {host['RestartPolicy']}")
    assert wrong == []


def test_app_containers_may_use_every_cpu_datastores_one(containers, topology):
    """docker_stack_limits: app `cpus: all` (no throttling, like the netns units), datastores 1.00. `all` is
    the lab host's CPUs as the role counts them there (nproc)."""
    cpus = int(LAB.run("nproc", check=True).stdout)
    kinds = {name: svc["kind"] for name, svc in topology["shoplab_services"].items()}
    found = {c["Config"]["Labels"]["org.shoplab.service"]: c["HostConfig"]["NanoCpus"] for c in containers}
    wanted = {name: (cpus if kinds[name] == "app" else 1) * 10**9 for name in found}
    assert found == wanted


def test_every_thread_runs_the_topologys_cpu_scheduling_policy(containers, topology):
    """`cpu_scheduling` in the topology, through `chrt --batch 0` before the image's entrypoint: SCHED_BATCH
    (ps: B) behind the gateway, SCHED_OTHER (TS) for the rest, every process and thread of the container."""
    services = topology["shoplab_services"]
    for container in containers:
        name = container["Config"]["Labels"]["org.shoplab.service"]
        pid = container["State"]["Pid"]
        # State.Pid is a process of the lab host's: ps runs there.
        listed = LAB.run("ps", "-L", "-o", "cls=", "--ppid", str(pid), "-p", str(pid), check=True)
        wanted = {"B"} if services[name].get("cpu_scheduling", "other") == "batch" else {"TS"}
        assert set(listed.stdout.split()) == wanted, container["Name"]


def test_bad_limits_are_refused_before_anything_changes(containers):
    before = sorted(c["Id"] for c in lab_containers())
    bad = {"app": {"cpus": "0", "memory": "256M", "pids": 1024}, "datastore": {"cpus": "1", "memory": "512M"}}
    result = LAB.playbook("site.yml", "docker", "-e", json.dumps({"docker_stack_limits": bad}))
    assert result.returncode != 0
    assert "docker_stack_limits must give app and datastore each cpus" in result.stdout, labtest.tail(result)
    assert sorted(c["Id"] for c in lab_containers()) == before


def test_database_password_only_in_a_secret_file(host, containers):
    secret = host.file(SECRET_FILE)
    assert secret.exists and secret.user == "root" and secret.mode == 0o640
    password = secret.content_string.strip()
    assert len(password) >= 32
    for container in containers:
        env = container["Config"]["Env"] or []
        assert not any(password in entry for entry in env), container["Name"]
        service = container["Config"]["Labels"]["org.shoplab.service"]
        if service in ("product", "order", "postgres"):
            secrets = [m for m in container["Mounts"] if m["Destination"].startswith("/run/secrets/")]
            assert secrets, container["Name"]


def test_the_tokens_are_secret_files_held_only_by_who_needs_them(host, containers, topology):
    tokens = {}
    for name, path in labtest.TOKEN_FILES["docker"].items():
        secret = host.file(path)
        assert secret.exists and secret.user == "root" and secret.mode == 0o640, path
        tokens[name] = secret.content_string.strip()
        assert len(tokens[name]) >= 32
    # Which Compose secret each service mounts: the registry token for the registry and the instances that
    # register, the operator token for the services holding the data; the gateway and datastores neither.
    both = {"registry", "operator"}
    wanted = {"registry": {"registry"}, "product": both, "order": both}
    for container in containers:
        env = container["Config"]["Env"] or []
        assert not any(token in entry for token in tokens.values() for entry in env), container["Name"]
        service = container["Config"]["Labels"]["org.shoplab.service"]
        tokens_mounted = [
            m["Destination"] for m in container["Mounts"] if m["Destination"].endswith("-token")
        ]
        mounted = {d.removeprefix("/run/secrets/").removesuffix("-token") for d in tokens_mounted}
        assert mounted == wanted.get(service, set()), container["Name"]
        if service == "gateway":
            backend = topology["shoplab_tiers"]["backend"]["docker_subnet"]
            assert f"GATEWAY_ALLOWED_NETWORKS={backend}" in env


# Run inside an order container with the service's own DATABASE_URL and password (what the shop logs in
# as): the role's attributes, what two privileged statements answer (a SQLSTATE, or "allowed"), and
# whether the cluster's superuser accepts the same password over TCP.
APP_LOGIN_PROBE = r"""
import json, psycopg2
from shoplab.core.config import read_database_url
out = {}
conn = psycopg2.connect(read_database_url(), connect_timeout=5)
conn.autocommit = True
cur = conn.cursor()
cur.execute(
    "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
)
out["role"] = list(cur.fetchone())
privileged = {
    "create_role": "CREATE ROLE shoplab_probe_role",
    "pg_authid": "SELECT rolpassword FROM pg_authid",
}
for name, sql in privileged.items():
    try:
        cur.execute(sql)
        out[name] = "allowed"
    except psycopg2.Error as error:
        out[name] = error.pgcode
if out["create_role"] == "allowed":
    cur.execute("DROP ROLE shoplab_probe_role")
try:
    psycopg2.connect(read_database_url(), user="postgres", connect_timeout=5).close()
    out["superuser_login"] = "allowed"
except psycopg2.OperationalError as error:
    out["superuser_login"] = str(error).strip().splitlines()[0]
print(json.dumps(out))
"""
INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture(scope="module")
def app_login(containers) -> dict:
    order = by_service(containers)["order"][0]["Name"].lstrip("/")
    return json.loads(docker("exec", order, "python3", "-c", APP_LOGIN_PROBE))


def test_the_applications_role_is_no_superuser(app_login, topology):
    # The role the services log in as, with the attributes PostgreSQL gives it (not superuser, may not
    # create roles or databases).
    assert app_login["role"] == [topology["shoplab_db_user"], False, False, False]


def test_the_applications_role_cannot_create_roles_or_read_password_hashes(app_login):
    assert app_login["create_role"] == INSUFFICIENT_PRIVILEGE
    assert app_login["pg_authid"] == INSUFFICIENT_PRIVILEGE


def test_the_superuser_is_not_reachable_with_the_applications_password(app_login):
    # pg_hba.conf has no TCP line for it (and its password is cleared): refused before any password.
    assert app_login["superuser_login"] != "allowed"
    assert "pg_hba.conf" in app_login["superuser_login"] or "password" in app_login["superuser_login"]


def test_only_postgres_is_a_superuser_and_the_application_owns_its_data(containers, topology):
    postgres = by_service(containers)["postgres"][0]["Name"].lstrip("/")
    db, user = topology["shoplab_db_name"], topology["shoplab_db_user"]

    def sql(query: str) -> list[str]:
        return docker("exec", postgres, "psql", "-U", "postgres", "-d", db, "-XtAc", query).split()

    assert sql("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1") == ["postgres"]
    assert sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'") == [user]
    # The services created their tables as that role (core/schema.py), so it owns them.
    assert sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'") == [user]


def test_the_shop_still_writes_orders_as_that_role(containers, gateway_url, topology):
    products = requests.get(f"{gateway_url}/api/products", timeout=10).json()["items"]
    in_stock = [p for p in products if p["stock"] > 0]
    assert in_stock, "nothing in stock"
    created = requests.post(
        f"{gateway_url}/api/orders",
        json={"items": [{"product_id": in_stock[0]["id"], "quantity": 1}]},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    postgres = by_service(containers)["postgres"][0]["Name"].lstrip("/")
    db, user = topology["shoplab_db_name"], topology["shoplab_db_user"]
    query = f"SELECT count(*) FROM orders WHERE id = {int(created.json()['id'])}"
    assert docker("exec", postgres, "psql", "-U", user, "-d", db, "-XtAc", query).strip() == "1"
