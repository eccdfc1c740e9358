"""The whole system on loopback: Redis, PostgreSQL, registry, product and order instances, gateway."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from shoplab.devtools.servers import LOOPBACK, Process, Servers, http_status, wait_for


@dataclass
class Stack:
    servers: Servers
    redis: Process
    database_url: str
    registry: Process
    gateway: Process
    products: list[Process] = field(default_factory=list)
    orders: list[Process] = field(default_factory=list)
    common_env: dict[str, str] = field(default_factory=dict)
    # service -> more environment for its instances only (e.g. another WORKER_CLASS for the gateway)
    per_service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.redis.port}/0"

    @property
    def registry_url(self) -> str:
        return f"http://{LOOPBACK}:{self.registry.port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{LOOPBACK}:{self.gateway.port}"

    @property
    def operator_headers(self) -> dict[str, str]:
        """What an operator sends for catalogue writes and the order list."""
        return {"Authorization": f"Bearer {self.common_env['SHOPLAB_OPERATOR_TOKEN']}"}

    @property
    def registry_headers(self) -> dict[str, str]:
        """What an instance sends for registry writes."""
        return {"Authorization": f"Bearer {self.common_env['SHOPLAB_REGISTRY_TOKEN']}"}

    def service_env(self, **extra: str) -> dict[str, str]:
        return {
            "SERVICE_REGISTRY": self.registry_url,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            **self.common_env,
            **extra,
        }

    def start_instance(self, service: str, name: str, wait: bool = True, **env: str) -> Process:
        env = {**self.per_service_env.get(service, {}), **env}
        return self.servers.start_service(service, name, self.service_env(**env), wait=wait)

    def wait_registered(self, service: str, instance_ids: set[str], timeout: float = 20) -> None:
        import json
        import urllib.request

        def registered() -> bool:
            with urllib.request.urlopen(f"{self.registry_url}/services/{service}/instances", timeout=1) as r:
                found = {i["instance_id"] for i in json.load(r)["instances"]}
            return instance_ids <= found

        wait_for(registered, timeout, f"{service} instances {sorted(instance_ids)} in the registry")


def start_stack(
    products: int = 2,
    orders: int = 2,
    workers: int = 1,
    gateway_port: int | None = None,
    servers: Servers | None = None,
    *,
    per_service_env: dict[str, dict[str, str]] | None = None,
    **common_env: str,
) -> Stack:
    """Start everything and wait until the gateway can route to every instance. The per-lab tokens are
    made up here unless `common_env` brings them (SHOPLAB_REGISTRY_TOKEN, SHOPLAB_OPERATOR_TOKEN).
    `per_service_env`: service -> environment for that service's instances only."""
    servers = servers or Servers()
    try:
        redis = servers.start_redis()
        database_url = servers.start_postgres()
        common_env.setdefault("WEB_CONCURRENCY", str(workers))
        for name in ("SHOPLAB_REGISTRY_TOKEN", "SHOPLAB_OPERATOR_TOKEN"):
            common_env.setdefault(name, secrets.token_urlsafe(24))
        registry = servers.start_service("registry", "registry", dict(common_env))
        stack = Stack(servers, redis, database_url, registry, gateway=None, common_env=common_env,  # type: ignore[arg-type]
                      per_service_env=per_service_env or {})  # fmt: skip
        # The first product instance creates and seeds the schema; the rest start in parallel.
        stack.products.append(stack.start_instance("product", "product-1"))
        for i in range(2, products + 1):
            stack.products.append(stack.start_instance("product", f"product-{i}", wait=False))
        for i in range(1, orders + 1):
            stack.orders.append(stack.start_instance("order", f"order-{i}", wait=False))
        gateway_env = stack.service_env(
            **stack.per_service_env.get("gateway", {}),
            **({"PORT": str(gateway_port)} if gateway_port else {}),
        )
        stack.gateway = servers.start_service("gateway", "gateway", gateway_env)
        for process in stack.products + stack.orders:
            ready = f"http://{LOOPBACK}:{process.port}/ready"
            wait_for(lambda url=ready: http_status(url) == 200, 30, process.name)
        stack.wait_registered("product", {p.name for p in stack.products})
        stack.wait_registered("order", {p.name for p in stack.orders})
        return stack
    except BaseException:
        servers.stop()
        raise
