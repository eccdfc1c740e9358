"""Configuration, read only from environment variables, with defaults that work on a lab host."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shoplab import DATASTORE_PORTS, DEFAULT_PORTS

# Where the other services are when the environment does not say (the topology's names and ports).
DEFAULT_REGISTRY_URL = f"http://registry:{DEFAULT_PORTS['registry']}"
DEFAULT_REDIS_URL = f"redis://redis:{DATASTORE_PORTS['redis']}/0"
DEFAULT_DATABASE_URL = f"postgresql://shoplab@postgres:{DATASTORE_PORTS['postgres']}/shoplab"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _env_float(name: str, default: float) -> float:
    value = _env(name, str(default))
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


def env_int(name: str, default: int) -> int:
    value = _env(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None


_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _env_size(name: str, default: str) -> int:
    """A size in bytes, written as logrotate writes it: 500k, 64M, 1G or a number of bytes."""
    value = _env(name, default)
    unit = _SIZE_UNITS.get(value[-1].lower(), 1)
    number = value[:-1] if unit > 1 else value
    if not number.isdigit():
        raise ValueError(f"{name} must be a size such as 500k, 64M or 1G (or bytes), not {value!r}")
    return int(number) * unit


def _env_at_least(name: str, default: int, least: int) -> int:
    value = env_int(name, default)
    if value < least:
        raise ValueError(f"{name} must be at least {least}, not {value}")
    return value


def _env_http_url(name: str, default: str) -> str:
    """An http:// URL with a host and a valid port, or empty (the caller's "none"). A URL the service
    would only fail on later (no scheme, a port that is no number) stops the start with its name."""
    value = os.environ.get(name, default).strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1:
        raise ValueError(
            f"{name} must be an http:// URL such as {default or 'http://host:port'}, not {value!r}"
        )
    return value


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name, "on" if default else "off").lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be on or off (or true/false, yes/no, 1/0), not {value!r}")


# Requests one gateway worker lets into a service at once (GATEWAY_MAX_INFLIGHT_<SERVICE>, or
# GATEWAY_MAX_INFLIGHT for both). A cached product read is a Redis GET on the instances' event loops:
# more of them in flight let each loop wake-up serve several (4 -> 16: +25 % req/s, the same p99). An
# order is a PostgreSQL transaction: 16 in flight per worker made its p99 1.4x longer for no more orders.
DEFAULT_MAX_INFLIGHT = {"product": 16, "order": 4}


def _max_inflight() -> dict[str, int]:
    return {
        service: env_int(f"GATEWAY_MAX_INFLIGHT_{service.upper()}", env_int("GATEWAY_MAX_INFLIGHT", limit))
        for service, limit in DEFAULT_MAX_INFLIGHT.items()
    }


def _default_share(service: str, worker_connections: int) -> int:
    """Connections one client address may hold per worker, unless MAX_CONNECTIONS_PER_CLIENT says: at the
    gateway, the public entry, half of them; behind it all of them, since there the one client is the
    gateway (its pooled connections to an instance, from one address) and refusing it would eject the
    instance."""
    return max(worker_connections // 2, 1) if service == "gateway" else worker_connections


def read_database_url() -> str:
    """DATABASE_URL, with the password from DATABASE_PASSWORD_FILE (Docker secrets) when that is set."""
    url = _env("DATABASE_URL", DEFAULT_DATABASE_URL)
    password_file = os.environ.get("DATABASE_PASSWORD_FILE", "").strip()
    if not password_file:
        return url
    with open(password_file, encoding="utf-8") as handle:
        password = handle.read().strip()
    # psycopg2 accepts a libpq URL followed by keyword overrides, so the password never has to be
    # URL-escaped into the connection string.
    return f"{url}{'&' if '?' in url else '?'}password={_quote(password)}"


def read_secret(name: str) -> str:
    """A per-lab secret: the file named by `<name>_FILE` (the deploys' way: the value never sits in an
    environment or a unit file), else `<name>` itself (a quick test by hand); empty when neither is set."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return os.environ.get(name, "").strip()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise ValueError(f"{name}_FILE {path}: {error.strerror}") from None


# The gateway connects only to instances inside these networks. Unset, only loopback (the dev and test
# stack): a lab that forgot to say which networks are its own routes nowhere rather than anywhere.
DEFAULT_ALLOWED_NETWORKS = "127.0.0.0/8"


def _env_networks(name: str, default: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    value = _env(name, default)
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{name} must be CIDRs separated by commas (172.21.0.0/24,…): {error}") from None


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


@dataclass(frozen=True)
class Config:
    service: str
    bind_host: str
    port: int
    instance_id: str
    service_registry: str
    advertise_addr: str
    database_url: str = field(repr=False)
    redis_url: str
    heartbeat_interval: float
    registry_ttl: float
    log_level: str
    http_fast_path: bool
    access_log: bool
    access_log_flush: float
    access_log_file: str
    access_log_max_bytes: int
    access_log_keep: int
    max_content_length: int
    cache_ttl: int
    redis_timeout: float
    db_pool_max: int
    gateway_connect_timeout: float
    gateway_attempt_timeout: float
    gateway_total_timeout: float
    gateway_lookup_ttl: float
    gateway_eject_after: int
    gateway_eject_seconds: float
    gateway_max_inflight: dict[str, int]  # per service; 0: no limit
    gateway_queue_timeout: float
    gateway_allowed_networks: tuple  # of ipaddress networks: upstream addresses outside are never used
    gateway_max_response_bytes: int
    # Per-lab secrets (read_secret): empty when not set; the services that need one refuse to start.
    registry_token: str = field(repr=False)
    operator_token: str = field(repr=False)
    # A request's head and body must arrive within this (from its first byte; for a connection's first
    # request, from the connection's start); an answer must be taken by the client within write_timeout.
    request_timeout: float
    write_timeout: float
    # Connections one client address may hold open per worker process.
    max_connections_per_client: int
    db_statement_timeout: float
    db_lock_timeout: float
    idempotency_key_ttl: float

    @classmethod
    def from_env(cls, service: str) -> Config:
        heartbeat = _env_float("HEARTBEAT_INTERVAL", 5.0)
        return cls(
            service=service,
            bind_host=_env("BIND_HOST", "0.0.0.0"),
            port=env_int("PORT", DEFAULT_PORTS.get(service, 8000)),
            instance_id=_env("INSTANCE_ID", socket.gethostname()),
            # An empty SERVICE_REGISTRY means "stand alone": no registration (tests, one-off runs).
            service_registry=_env_http_url("SERVICE_REGISTRY", DEFAULT_REGISTRY_URL),
            advertise_addr=_env("ADVERTISE_ADDR", ""),
            database_url=read_database_url() if service in ("product", "order") else "",
            redis_url=_env("REDIS_URL", DEFAULT_REDIS_URL),
            heartbeat_interval=heartbeat,
            # Expiry at three missed heartbeats.
            registry_ttl=_env_float("REGISTRY_TTL", 3 * heartbeat),
            log_level=_env("LOG_LEVEL", "INFO").upper(),
            # Plain HTTP/1.1 requests served by shoplab.server.plainhttp rather than gunicorn's parser.
            http_fast_path=_env_bool("HTTP_FAST_PATH", True),
            access_log=_env_bool("ACCESS_LOG", True),
            # Seconds between writes of buffered access lines; 0 writes each line as it happens.
            access_log_flush=_env_float("ACCESS_LOG_FLUSH_SECONDS", 1.0),
            # Empty: access lines on stdout. A path: appended there, rotated past the size (0: never),
            # keeping ACCESS_LOG_KEEP older files (shoplab.core.logs.AccessFile).
            access_log_file=_env("ACCESS_LOG_FILE", ""),
            access_log_max_bytes=_env_size("ACCESS_LOG_MAX_SIZE", "64M"),
            access_log_keep=_env_at_least("ACCESS_LOG_KEEP", 4, 1),
            max_content_length=env_int("MAX_CONTENT_LENGTH", 64 * 1024),
            cache_ttl=env_int("CACHE_TTL", 60),
            redis_timeout=_env_float("REDIS_TIMEOUT", 0.25),
            db_pool_max=env_int("DB_POOL_MAX", 10),
            gateway_connect_timeout=_env_float("GATEWAY_CONNECT_TIMEOUT", 0.5),
            gateway_attempt_timeout=_env_float("GATEWAY_ATTEMPT_TIMEOUT", 5.0),
            gateway_total_timeout=_env_float("GATEWAY_TOTAL_TIMEOUT", 10.0),
            gateway_lookup_ttl=_env_float("GATEWAY_LOOKUP_TTL", 1.0),
            gateway_eject_after=env_int("GATEWAY_EJECT_AFTER", 3),
            gateway_eject_seconds=_env_float("GATEWAY_EJECT_SECONDS", 10.0),
            gateway_max_inflight=_max_inflight(),
            gateway_queue_timeout=_env_float("GATEWAY_QUEUE_TIMEOUT", 5.0),
            gateway_allowed_networks=_env_networks("GATEWAY_ALLOWED_NETWORKS", DEFAULT_ALLOWED_NETWORKS),
            gateway_max_response_bytes=_env_size("GATEWAY_MAX_RESPONSE_SIZE", "4M"),
            registry_token=read_secret("SHOPLAB_REGISTRY_TOKEN"),
            operator_token=read_secret("SHOPLAB_OPERATOR_TOKEN"),
            request_timeout=_env_float("REQUEST_TIMEOUT", 10.0),
            write_timeout=_env_float("WRITE_TIMEOUT", 10.0),
            max_connections_per_client=_env_at_least(
                "MAX_CONNECTIONS_PER_CLIENT", _default_share(service, env_int("WORKER_CONNECTIONS", 256)), 1
            ),
            # Below the gateway's attempt timeout (5 s), so the service answers 503 before the gateway 504.
            db_statement_timeout=_env_float("DB_STATEMENT_TIMEOUT", 4.0),
            db_lock_timeout=_env_float("DB_LOCK_TIMEOUT", 2.0),
            idempotency_key_ttl=_env_float("IDEMPOTENCY_KEY_TTL", 24 * 3600.0),
        )
