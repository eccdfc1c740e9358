"""Which instance answers next: registry lookups cached briefly, round-robin, ejection after failures.

All state is per gunicorn worker; that is enough to spread load and keeps the hot path lock-light.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

from shoplab.core.registry_client import Instance, RegistryClient, RegistryError

log = logging.getLogger("shoplab.gateway.balancer")


@dataclass
class _Lookup:
    instances: list[Instance] = field(default_factory=list)
    fetched_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: itertools.count = field(default_factory=itertools.count)


def within(address: str, networks: tuple) -> bool:
    """Whether `address` is an IP address inside one of `networks`. A name is not: resolving it would
    block the event loop, and the registry keeps only the addresses instances connect from."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class Balancer:
    def __init__(
        self,
        registry: RegistryClient,
        lookup_ttl: float,
        eject_after: int,
        eject_seconds: float,
        allowed_networks: tuple = (ipaddress.ip_network("127.0.0.0/8"),),
    ):
        """`allowed_networks`: instances listed at an address outside them are never used (the lab's tier
        subnets: whatever the registry says, order traffic does not leave the lab)."""
        self.registry = registry
        self.lookup_ttl = lookup_ttl
        self.eject_after = eject_after
        self.eject_seconds = eject_seconds
        self.allowed_networks = allowed_networks
        self._refused: set[tuple[str, str, int]] = set()  # warned about once each
        self._lookups: dict[str, _Lookup] = {}
        self._failures: dict[str, int] = {}
        self._ejected_until: dict[str, float] = {}

    def _entry(self, service: str) -> _Lookup:
        lookup = self._lookups.get(service)
        if lookup is None:  # setdefault alone would build a _Lookup (a lock, a counter) on every call
            lookup = self._lookups.setdefault(service, _Lookup())
        return lookup

    def _is_stale(self, lookup: _Lookup) -> bool:
        return time.monotonic() - lookup.fetched_at >= self.lookup_ttl

    def _lookup(self, service: str) -> _Lookup:
        lookup = self._entry(service)
        if not self._is_stale(lookup):
            return lookup
        # One thread refreshes; the others keep using the previous list meanwhile (if there is one).
        if lookup.lock.acquire(blocking=not lookup.instances):
            try:
                if self._is_stale(lookup):
                    try:
                        lookup.instances = self._usable(self.registry.lookup(service))
                    except RegistryError as error:
                        # A registry outage must not take the shop down: keep routing to the last known set.
                        log.warning(
                            "registry lookup for %s failed, keeping %d known: %s",
                            service,
                            len(lookup.instances),
                            error,
                        )
                    lookup.fetched_at = time.monotonic()
            finally:
                lookup.lock.release()
        return lookup

    def _usable(self, instances: list[Instance]) -> list[Instance]:
        usable = []
        for instance in instances:
            if within(instance.address, self.allowed_networks):
                usable.append(instance)
                continue
            key = (instance.instance_id, instance.address, instance.port)
            if key not in self._refused:
                self._refused.add(key)
                log.warning(
                    "ignoring %s/%s at %s:%s: not an address in GATEWAY_ALLOWED_NETWORKS",
                    instance.service,
                    *key,
                )
        return usable

    def looked_up(self, service: str) -> bool:
        """Whether the registry has been asked for `service` yet (successfully or not)."""
        lookup = self._lookups.get(service)
        return lookup is not None and lookup.fetched_at > float("-inf")

    def stale(self, service: str) -> bool:
        return self._is_stale(self._entry(service))

    def refresh(self, service: str) -> None:
        """Ask the registry now if the list is stale (blocking: the event loop calls it on a thread)."""
        self._lookup(service)

    def candidates(self, service: str, refresh: bool = True) -> list[Instance]:
        """Instances to try, in order: round-robin start; ejected ones only if nothing else is left.

        refresh=False: never ask the registry here, use the list as it is (the event loop's way)."""
        lookup = self._lookup(service) if refresh else self._entry(service)
        instances = lookup.instances
        if not instances:
            return []
        start = next(lookup.counter) % len(instances)
        rotated = instances[start:] + instances[:start]
        if not self._ejected_until:
            return rotated  # nothing ejected, the usual case: no key to build per instance and request
        now = time.monotonic()
        for key, until in list(self._ejected_until.items()):  # list(): one step, safe beside other threads
            if until <= now:
                self._ejected_until.pop(key, None)  # back in rotation
        healthy = [i for i in rotated if self._key(i) not in self._ejected_until]
        return healthy or rotated

    @staticmethod
    def _key(instance: Instance) -> str:
        return f"{instance.service}/{instance.instance_id}@{instance.address}:{instance.port}"

    def succeeded(self, instance: Instance) -> None:
        if self._failures:  # only failures are counted: a success forgives them
            self._failures.pop(self._key(instance), None)

    def failed(self, instance: Instance) -> None:
        key = self._key(instance)
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if failures >= self.eject_after:
            self._ejected_until[key] = time.monotonic() + self.eject_seconds
            self._failures.pop(key, None)
            log.warning("ejected %s for %.0fs after %d failures", key, self.eject_seconds, failures)
