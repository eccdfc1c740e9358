"""`shoplab-serve <service>`: run one service under gunicorn, configured from the environment."""

from __future__ import annotations

import argparse
import importlib
import os

from gunicorn.app.base import BaseApplication

from shoplab import SERVICES
from shoplab.core.config import Config, env_int
from shoplab.core.registry_client import Heartbeat, Instance, RegistryClient, RegistryError, advertise_address

# Services that announce themselves to the registry (the registry and the gateway do not).
REGISTERING = ("product", "order")
THREAD_WORKER = "shoplab.server.worker.KeepAliveThreadWorker"
DEFAULT_WORKER_CLASS = {
    "gateway": "shoplab.server.gateway_worker.EventLoopWorker",
    "product": "shoplab.server.product_worker.CachedReadsLoopWorker",
}


def gunicorn_options(config: Config) -> dict:
    # The registry keeps its state in memory: exactly one process, whatever WEB_CONCURRENCY says.
    workers = 1 if config.service == "registry" else env_int("WEB_CONCURRENCY", 2)
    options = {
        "bind": f"{config.bind_host}:{config.port}",
        "workers": workers,
        # The gateway and the product service: an event loop per worker (shoplab.server.loop_worker) for
        # the proxy path and the cache hits. The others: one thread per connection, served in a loop
        # (shoplab.server.worker explains why not gthread).
        "worker_class": os.environ.get("WORKER_CLASS")
        or DEFAULT_WORKER_CLASS.get(config.service, THREAD_WORKER),
        # The product's loop: threads running Flask for what is not a cache hit. gthread: its pool.
        "threads": env_int("THREADS", 16 if config.service == "gateway" else 8),
        # Open connections per worker (one thread each); beyond this, new ones wait in the backlog.
        "worker_connections": env_int("WORKER_CONNECTIONS", 256),
        # Longer than the gateway's idle-connection cut-off, so a pooled upstream connection is never
        # closed by the server just as the gateway reuses it.
        "keepalive": env_int("KEEPALIVE", 75),
        "timeout": env_int("WORKER_TIMEOUT", 30),
        "graceful_timeout": 10,
        "backlog": 2048,
        "accesslog": None,  # the app logs one JSON line per request itself
        "errorlog": "-",
        "loglevel": config.log_level.lower(),
        "proc_name": f"shoplab-{config.service}-{config.instance_id}",
        "control_socket_disable": True,  # several instances on one host must not fight over one socket
    }
    if config.service in REGISTERING and config.service_registry:
        if not config.registry_token:
            raise RuntimeError(
                "SHOPLAB_REGISTRY_TOKEN (or SHOPLAB_REGISTRY_TOKEN_FILE) is not set: registering with "
                "SERVICE_REGISTRY needs it (an empty SERVICE_REGISTRY stands alone)"
            )
        options.update(registration_hooks(config))
    return options


def registration_hooks(config: Config) -> dict:
    """Every worker heartbeats the SAME instance id (idempotent); the master deregisters on exit.

    The heartbeat thread lives in the workers, not in the master: a thread running in the master while
    it forks workers can leave a child with a half-imported module or a lock held forever.
    """

    def instance() -> Instance:
        address = advertise_address(config.service_registry, config.advertise_addr)
        return Instance(config.service, config.instance_id, address, config.port)

    def post_worker_init(worker) -> None:
        client = RegistryClient(config.service_registry, token=config.registry_token)
        Heartbeat(client, instance, config.heartbeat_interval).start()

    def on_exit(server) -> None:
        try:
            RegistryClient(config.service_registry, token=config.registry_token).deregister(instance())
        except RegistryError as error:
            server.log.warning("deregister failed: %s", error)

    return {"post_worker_init": post_worker_init, "on_exit": on_exit}


class ServiceApplication(BaseApplication):
    def __init__(self, service: str, config: Config):
        self.service = service
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.config).items():
            self.cfg.set(key, value)

    def load(self):
        # Imported in the worker, after the fork: pools and sockets are never shared across processes.
        app = importlib.import_module(f"shoplab.{self.service}").create_app(self.config)
        if "asgi_alternative" in str(self.cfg.worker_class_str):
            # The benchmark's asyncio alternative (shoplab/server/README.md): the service as an ASGI app.
            from shoplab.server.asgi_alternative import asgi_app

            return asgi_app(self.service, app)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="shoplab-serve", description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    args = parser.parse_args(argv)
    ServiceApplication(args.service, Config.from_env(args.service)).run()


if __name__ == "__main__":
    main()
