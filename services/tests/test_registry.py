"""The service registry: register, heartbeat, expiry after missed heartbeats, self-healing restarts."""

from __future__ import annotations

import time

import requests
from helpers import FAST_ENV, HEARTBEAT_INTERVAL, REGISTRY, TOKENS, assert_problem, register
from shoplab.core.registry_client import Heartbeat, Instance, RegistryClient
from shoplab.devtools.servers import wait_for

TTL = 3 * float(HEARTBEAT_INTERVAL)


def instances(registry: str, service: str) -> dict[str, dict]:
    response = requests.get(f"{registry}/services/{service}/instances", timeout=5)
    assert response.status_code == 200
    return {i["instance_id"]: i for i in response.json()["instances"]}


def test_register_lookup_heartbeat_deregister(stack):
    registry = stack.registry_url
    assert register(registry, "manualsvc", "manual-1", 6001).status_code == 201
    # Registering again is idempotent (a refresh, not a duplicate).
    assert register(registry, "manualsvc", "manual-1", 6001).status_code == 200
    found = instances(registry, "manualsvc")
    assert list(found) == ["manual-1"]
    assert (found["manual-1"]["address"], found["manual-1"]["port"]) == ("127.0.0.1", 6001)

    beat = requests.put(f"{registry}/services/manualsvc/instances/manual-1/heartbeat", headers=REGISTRY)
    assert beat.status_code == 200
    gone = requests.delete(f"{registry}/services/manualsvc/instances/manual-1", headers=REGISTRY, timeout=5)
    assert gone.status_code == 204
    assert instances(registry, "manualsvc") == {}
    # A heartbeat for an instance the registry does not know is a 404: the client's cue to re-register.
    assert_problem(
        requests.put(f"{registry}/services/manualsvc/instances/manual-1/heartbeat", headers=REGISTRY), 404
    )


def test_a_heartbeat_asks_where_it_is_again_before_each_registration(stack):
    """An instance that started before its registry's name resolved (a Swarm task) advertised 127.0.0.1,
    which the registry refuses: not the address the connection comes from. Its heartbeat asks where it is
    before every registration, so it registers once the answer is right. Here the wrong answer is a
    documentation address (192.0.2.7), the right one loopback, where the test's connections come from."""
    answers = iter(["192.0.2.7"])

    def describe() -> Instance:
        return Instance("latesvc", "late-1", next(answers, "127.0.0.1"), 6003)

    client = RegistryClient(stack.registry_url, token=TOKENS["SHOPLAB_REGISTRY_TOKEN"])
    heartbeat = Heartbeat(client, describe, interval=60)
    heartbeat.beat()
    assert not heartbeat.registered
    # (A 503 "warming up" comes first while the session's registry is young.)
    wait_for(lambda: instances(stack.registry_url, "latesvc") == {}, TTL + 2, "an empty, answered list")
    heartbeat.beat()
    assert heartbeat.registered
    assert instances(stack.registry_url, "latesvc")["late-1"]["address"] == "127.0.0.1"
    client.deregister(heartbeat.instance)


def test_registry_rejects_bad_registrations(stack):
    url = f"{stack.registry_url}/services/badsvc/instances"
    json_header = {"Content-Type": "application/json", **REGISTRY}
    assert_problem(requests.post(url, data="{not json", headers=json_header), 400)
    assert_problem(requests.post(url, data="x", headers={"Content-Type": "text/plain", **REGISTRY}), 415)
    for body in (
        {"instance_id": "a", "address": "127.0.0.1", "port": True},
        {"instance_id": "a", "address": "127.0.0.1", "port": 70000},
        {"instance_id": "a b", "address": "127.0.0.1", "port": 80},
        {"address": "127.0.0.1", "port": 80},
    ):
        assert_problem(requests.post(url, json=body, headers=REGISTRY, timeout=5), 422)
    # Nothing was registered (a 503 "warming up" comes first while the session's registry is young).
    wait_for(lambda: instances(stack.registry_url, "badsvc") == {}, TTL + 2, "an empty, answered list")


def test_instances_expire_after_missed_heartbeats(stack):
    registry = stack.registry_url
    before_registering = time.monotonic()  # the registry's own clock for it starts after this
    assert register(registry, "silentsvc", "silent-1", 6002).status_code == 201
    assert "silent-1" in instances(registry, "silentsvc")
    wait_for(lambda: "silent-1" not in instances(registry, "silentsvc"), TTL * 4, "expiry")
    # Not before the TTL (three heartbeat intervals) ran out.
    assert time.monotonic() - before_registering >= TTL


def test_live_instances_stay_registered(stack):
    # The session's instances heartbeat every interval; over two TTLs they must never drop out.
    deadline = time.monotonic() + TTL * 2
    while time.monotonic() < deadline:
        assert {"product-1", "product-2"} <= set(instances(stack.registry_url, "product"))
        assert {"order-1", "order-2"} <= set(instances(stack.registry_url, "order"))
        time.sleep(0.2)


def test_registry_restart_heals_itself(stack, servers):
    """Kill the registry, start a new empty one on the same port: instances re-register on their own."""
    registry = servers.start_service("registry", "registry-x", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    env = stack.service_env(SERVICE_REGISTRY=registry_url)
    servers.start_service("product", "product-healing", env)
    wait_for(lambda: "product-healing" in instances(registry_url, "product"), 10, "first registration")

    registry.kill()
    replacement = servers.start_service("registry", "registry-y", {**FAST_ENV, "PORT": str(registry.port)})
    # The replacement starts empty; the instance's next heartbeat gets a 404 and registers again.
    wait_for(lambda: "product-healing" in instances(registry_url, "product"), 10, "re-registration")
    assert replacement.alive()
    log = servers.processes[1].log_path
    # The registry sees the registration a moment before the instance logs it.
    wait_for(lambda: log.read_text().count("registered product-healing") >= 2, 5, "the second registration")


def test_a_restarted_registry_does_not_answer_an_empty_list_while_instances_re_register(stack, servers):
    """Empty because it just started, not because nothing runs: a 503 problem, so that the gateway keeps
    routing to the instances it knew (found by the registry-killed drill: 34 failed orders)."""
    registry = servers.start_service("registry", "registry-warming", dict(FAST_ENV))
    url = f"http://127.0.0.1:{registry.port}/services/product/instances"
    answer = requests.get(url, timeout=5)
    assert_problem(answer, 503)
    assert "re-register" in answer.json()["detail"]
    # After one TTL an empty service is just empty.
    time.sleep(TTL)
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200 and answer.json()["instances"] == []


def test_many_workers_register_one_instance(stack, servers):
    registry = servers.start_service("registry", "registry-w", dict(FAST_ENV))
    registry_url = f"http://127.0.0.1:{registry.port}"
    servers.start_service(
        "product", "product-3w", stack.service_env(SERVICE_REGISTRY=registry_url, WEB_CONCURRENCY="3")
    )
    wait_for(lambda: "product-3w" in instances(registry_url, "product"), 10, "registration")
    time.sleep(TTL)
    assert list(instances(registry_url, "product")) == ["product-3w"]


def test_clean_shutdown_deregisters_at_once(stack, servers):
    registry = servers.start_service("registry", "registry-d", {**FAST_ENV, "HEARTBEAT_INTERVAL": "30"})
    registry_url = f"http://127.0.0.1:{registry.port}"
    env = stack.service_env(SERVICE_REGISTRY=registry_url, HEARTBEAT_INTERVAL="30")
    product = servers.start_service("product", "product-leaving", env)
    wait_for(lambda: "product-leaving" in instances(registry_url, "product"), 10, "registration")
    product.stop()  # SIGTERM: gunicorn stops its workers, then the master deregisters
    # With a 90 s TTL, only the deregistration can have removed it this soon.
    assert "product-leaving" not in instances(registry_url, "product")
