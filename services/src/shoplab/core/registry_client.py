"""Talking to the service registry: register, heartbeat, deregister and look up instances."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("shoplab.registry_client")


class RegistryError(Exception):
    pass


@dataclass(frozen=True)
class Instance:
    service: str
    instance_id: str
    address: str
    port: int


def advertise_address(registry_url: str, configured: str = "") -> str:
    """The address others reach us at: ADVERTISE_ADDR, else the source address of our route to the registry.

    Connecting a UDP socket sends nothing; it only asks the kernel which local address it would use.
    """
    if configured:
        return configured
    host, port = _host_port(registry_url)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            return probe.getsockname()[0]
    except OSError as error:
        log.warning("cannot find the route to the registry (%s); advertising 127.0.0.1", error)
        return "127.0.0.1"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 80


class RegistryClient:
    def __init__(self, base_url: str, timeout: float = 2.0, token: str = ""):
        """`token`: the lab's registry token, sent with every write (look-ups need none)."""
        self.host, self.port = _host_port(base_url)
        self.timeout = timeout
        self._token = token

    def __repr__(self) -> str:
        return f"RegistryClient({self.host}:{self.port})"  # never the token

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            if method != "GET" and self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as error:
            raise RegistryError(f"registry unreachable: {error}") from error
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return response.status, parsed

    def register(self, instance: Instance) -> None:
        status, body = self._request(
            "POST",
            f"/services/{instance.service}/instances",
            {"instance_id": instance.instance_id, "address": instance.address, "port": instance.port},
        )
        if status not in (200, 201):
            # The problem's detail says why (a wrong token, an address that is not ours, an id held
            # elsewhere); it never holds the token.
            detail = body.get("detail") if isinstance(body, dict) else body
            raise RegistryError(f"register answered {status}: {detail}")

    def heartbeat(self, instance: Instance) -> bool:
        """True if the registry knows us; False (404) means it forgot us, e.g. after a restart."""
        status, body = self._request(
            "PUT", f"/services/{instance.service}/instances/{instance.instance_id}/heartbeat"
        )
        if status == 404:
            return False
        if status != 200:
            raise RegistryError(f"heartbeat answered {status}: {body}")
        return True

    def deregister(self, instance: Instance) -> None:
        self._request("DELETE", f"/services/{instance.service}/instances/{instance.instance_id}")

    def lookup(self, service: str) -> list[Instance]:
        status, body = self._request("GET", f"/services/{service}/instances")
        if status != 200 or not isinstance(body, dict):
            raise RegistryError(f"lookup answered {status}")
        return [
            Instance(service, item["instance_id"], item["address"], int(item["port"]))
            for item in body.get("instances", [])
        ]

    def health(self) -> bool:
        try:
            status, _ = self._request("GET", "/health")
        except RegistryError:
            return False
        return status == 200


class Heartbeat:
    """Keeps one instance registered: registers, heartbeats every interval, re-registers when forgotten.

    Each gunicorn worker runs one; they share the instance id, and registering is idempotent, so several
    workers still make one registry entry. `describe` says who and where the instance is; it is asked again
    before every registration, because the address can be unknown at start: an instance whose registry's
    name does not resolve yet (a Swarm service started before the registry's) advertises 127.0.0.1, which
    the registry refuses, and finds its real address once the name resolves.
    """

    def __init__(self, client: RegistryClient, describe: Callable[[], Instance], interval: float):
        self.client = client
        self.describe = describe
        # What was registered last: describe() says it again before each registration.
        self.instance: Instance | None = None
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoplab-heartbeat", daemon=True)
        self.registered = False

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """One round: heartbeat if registered, (re-)register otherwise."""
        try:
            if self.registered and self.client.heartbeat(self.instance):
                return
            if self.registered:
                log.warning("registry forgot %s; registering again", self.instance.instance_id)
            self.instance = self.describe()
            self.client.register(self.instance)
            log.info("registered %s at %s:%s", *self._names())
            self.registered = True
        except RegistryError as error:
            # Keep trying on the next beat; registration may already have expired, so start over.
            log.warning("heartbeat failed: %s", error)
            self.registered = False

    def _names(self) -> tuple[str, str, int]:
        return self.instance.instance_id, self.instance.address, self.instance.port

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
