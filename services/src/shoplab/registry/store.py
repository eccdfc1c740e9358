"""In-memory registry state. It lives in ONE process (gunicorn, 1 worker, threads): losing it on a
restart is fine, because every instance registers again on its next heartbeat."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Registration:
    service: str
    instance_id: str
    address: str
    port: int
    registered_at: float
    last_heartbeat: float

    def as_dict(self, now: float) -> dict:
        return {
            "service": self.service,
            "instance_id": self.instance_id,
            "address": self.address,
            "port": self.port,
            "age_seconds": round(now - self.registered_at, 3),
            "last_heartbeat_seconds_ago": round(now - self.last_heartbeat, 3),
        }


class RegistryStore:
    def __init__(self, ttl: float, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self.started = clock()
        self._heard: set[str] = set()  # services with a registration since this registry started
        self._lock = threading.Lock()
        self._services: dict[str, dict[str, Registration]] = {}

    def register(
        self, service: str, instance_id: str, address: str, port: int
    ) -> tuple[bool, Registration | None]:
        """Register or refresh: (True when the instance is new, None), or (False, the live registration)
        when the id is held at another address: an entry is never moved while it is alive."""
        now = self.clock()
        with self._lock:
            self._heard.add(service)
            instances = self._services.setdefault(service, {})
            existing = instances.get(instance_id)
            created = existing is None or self._expired(existing, now)
            if not created and (existing.address, existing.port) != (address, port):
                return False, existing
            registered_at = now if created else existing.registered_at
            instances[instance_id] = Registration(service, instance_id, address, port, registered_at, now)
            return created, None

    def heartbeat(self, service: str, instance_id: str, source: str) -> bool:
        """Keep a live entry alive; only its own address may (False: unknown here, register again)."""
        now = self.clock()
        with self._lock:
            registration = self._services.get(service, {}).get(instance_id)
            if registration is None or self._expired(registration, now) or registration.address != source:
                return False
            registration.last_heartbeat = now
            return True

    def deregister(self, service: str, instance_id: str, source: str) -> bool:
        with self._lock:
            instances = self._services.get(service, {})
            registration = instances.get(instance_id)
            if registration is None or registration.address != source:
                return False
            del instances[instance_id]
            return True

    def healthy(self, service: str) -> list[dict]:
        now = self.clock()
        with self._lock:
            self._purge(now)
            instances = self._services.get(service, {}).values()
            return [r.as_dict(now) for r in sorted(instances, key=lambda r: r.instance_id)]

    def all_services(self) -> dict[str, list[dict]]:
        now = self.clock()
        with self._lock:
            self._purge(now)
            return {
                name: [r.as_dict(now) for r in sorted(instances.values(), key=lambda r: r.instance_id)]
                for name, instances in sorted(self._services.items())
            }

    def warming_up(self, service: str) -> float:
        """Seconds since start while younger than one TTL and no instance of `service` registered yet,
        else 0. A restarted registry is empty until every live instance's next heartbeat (404, then a
        new registration) has come: within one TTL."""
        age = self.clock() - self.started
        if age >= self.ttl or service in self._heard:
            return 0.0
        return max(age, 1e-6)

    def _expired(self, registration: Registration, now: float) -> bool:
        return now - registration.last_heartbeat > self.ttl

    def _purge(self, now: float) -> None:
        for instances in self._services.values():
            for instance_id in [i for i, r in instances.items() if self._expired(r, now)]:
                del instances[instance_id]
