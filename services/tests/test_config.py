"""Configuration comes from the environment only, with safe defaults."""

from __future__ import annotations

import psycopg2
import pytest
from shoplab.core.config import Config


def test_defaults_match_the_services_contract(monkeypatch):
    for name in ("PORT", "BIND_HOST", "SERVICE_REGISTRY", "REDIS_URL", "DATABASE_URL", "HEARTBEAT_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATABASE_PASSWORD_FILE", raising=False)
    ports = {name: Config.from_env(name).port for name in ("gateway", "registry", "product", "order")}
    assert ports == {"gateway": 3000, "registry": 5000, "product": 5001, "order": 5002}
    product = Config.from_env("product")
    assert product.bind_host == "0.0.0.0"
    assert product.service_registry == "http://registry:5000"
    assert product.redis_url == "redis://redis:6379/0"
    assert product.database_url == "postgresql://shoplab@postgres:5432/shoplab"
    assert product.registry_ttl == 3 * product.heartbeat_interval


def test_the_gateway_lets_more_product_reads_than_orders_into_a_service(monkeypatch):
    for name in ("GATEWAY_MAX_INFLIGHT", "GATEWAY_MAX_INFLIGHT_PRODUCT", "GATEWAY_MAX_INFLIGHT_ORDER"):
        monkeypatch.delenv(name, raising=False)
    assert Config.from_env("gateway").gateway_max_inflight == {"product": 16, "order": 4}
    monkeypatch.setenv("GATEWAY_MAX_INFLIGHT", "2")  # one limit for both...
    assert Config.from_env("gateway").gateway_max_inflight == {"product": 2, "order": 2}
    monkeypatch.setenv("GATEWAY_MAX_INFLIGHT_ORDER", "0")  # ...unless a service has its own (0: none)
    assert Config.from_env("gateway").gateway_max_inflight == {"product": 2, "order": 0}
    monkeypatch.setenv("GATEWAY_MAX_INFLIGHT_PRODUCT", "many")
    with pytest.raises(ValueError, match="GATEWAY_MAX_INFLIGHT_PRODUCT must be a whole number, not 'many'"):
        Config.from_env("gateway")
    monkeypatch.setenv("GATEWAY_MAX_INFLIGHT_PRODUCT", "8")
    monkeypatch.setenv("GATEWAY_QUEUE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="GATEWAY_QUEUE_TIMEOUT must be a number, not 'soon'"):
        Config.from_env("gateway")


@pytest.mark.parametrize("name", ["HTTP_FAST_PATH", "ACCESS_LOG"])
def test_switches_are_on_by_default_and_read_on_off(monkeypatch, name):
    attribute = name.lower()
    monkeypatch.delenv(name, raising=False)
    assert getattr(Config.from_env("gateway"), attribute) is True
    monkeypatch.setenv(name, "off")
    assert getattr(Config.from_env("gateway"), attribute) is False
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(ValueError, match=name):
        Config.from_env("gateway")


def test_password_file_is_used_and_survives_special_characters(monkeypatch, tmp_path, stack):
    """The password is appended to DATABASE_URL, escaped; libpq parses it back (a real connection)."""
    secret = tmp_path / "db_password"
    secret.write_text("p@ss/w:rd?&=\n")
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    url = Config.from_env("order").database_url
    assert "p%40ss%2Fw%3Ard%3F%26%3D" in url
    # The test cluster trusts loopback, so connecting proves the URL still parses; psycopg2 masks the
    # password in conn.dsn, which shows that one was passed.
    with psycopg2.connect(url) as conn:
        assert conn.get_dsn_parameters()["dbname"] == "shoplab"
        assert "password=xxx" in conn.dsn


@pytest.mark.parametrize("service", ["gateway", "registry"])
def test_services_without_a_database_do_not_read_its_password(monkeypatch, service):
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", "/nonexistent/secret")
    assert Config.from_env(service).database_url == ""


def test_probe_reports_readiness(stack, monkeypatch):
    from shoplab.probe import main as probe

    assert probe([f"{stack.gateway_url}/ready"]) == 0
    assert probe([f"{stack.gateway_url}/api/products/999999999"]) == 1  # a 404 is not healthy
    assert probe(["http://127.0.0.1:9/ready", "--timeout", "1"]) == 1  # nothing listens there
    monkeypatch.setenv("PORT", str(stack.gateway.port))
    assert probe([]) == 0  # this instance's /ready, on $PORT
    assert probe(["/health", "--timeout", "2"]) == 0
    assert probe(["/api/products/999999999"]) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout"],
        ["--timeout", "soon"],
        ["--timeout", "0"],
        ["shop"],
        ["http://host:port/"],
        ["/a", "/b"],
        ["-v"],
    ],
)
def test_probe_refuses_bad_arguments_with_a_usage_error(argv, capsys):
    from shoplab.probe import main as probe

    assert probe(argv) == 2
    assert "usage: shoplab-probe" in capsys.readouterr().err


def test_probe_refuses_a_port_that_is_not_a_number(monkeypatch, capsys):
    from shoplab.probe import main as probe

    monkeypatch.setenv("PORT", "http")
    assert probe(["/health"]) == 2
    assert "PORT='http' is not a port number" in capsys.readouterr().err


def test_probe_reads_urls_paths_and_service_names(monkeypatch):
    from shoplab.probe import resolve

    monkeypatch.setenv("PORT", "5001")
    assert resolve("") == ("127.0.0.1", 5001, "/ready")
    assert resolve("/health") == ("127.0.0.1", 5001, "/health")
    assert resolve("order") == ("127.0.0.1", 5002, "/ready")
    assert resolve("http://172.21.0.20:5001/ready") == ("172.21.0.20", 5001, "/ready")
    assert resolve("http://registry/services") == ("registry", 80, "/services")
    assert resolve("http://[::1]:3000") == ("::1", 3000, "/")


@pytest.mark.parametrize(
    ("written", "size"), [("", 64 * 1024**2), ("0", 0), ("4096", 4096), ("500k", 500 * 1024), ("1G", 1024**3)]
)
def test_access_log_max_size_reads_logrotate_sizes(monkeypatch, written, size):
    monkeypatch.setenv("ACCESS_LOG_MAX_SIZE", written)
    assert Config.from_env("gateway").access_log_max_bytes == size


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ACCESS_LOG_MAX_SIZE", "64MB", "ACCESS_LOG_MAX_SIZE must be a size such as 500k, 64M or 1G"),
        ("ACCESS_LOG_MAX_SIZE", "-1", "ACCESS_LOG_MAX_SIZE must be a size"),
        ("ACCESS_LOG_KEEP", "0", "ACCESS_LOG_KEEP must be at least 1, not 0"),
        ("ACCESS_LOG_KEEP", "few", "ACCESS_LOG_KEEP must be a whole number, not 'few'"),
    ],
)
def test_bad_access_log_settings_are_refused_by_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Config.from_env("gateway")


def test_gunicorn_settings_are_refused_by_name(monkeypatch):
    from shoplab.serve import gunicorn_options

    config = Config.from_env("gateway")
    monkeypatch.setenv("WEB_CONCURRENCY", "two")
    with pytest.raises(ValueError, match="WEB_CONCURRENCY must be a whole number, not 'two'"):
        gunicorn_options(config)


@pytest.mark.parametrize(
    "value", ["registry:5000", "http://registry:5OOO", "ftp://registry:5000", "http://:5000"]
)
def test_a_registry_url_the_service_could_never_use_stops_the_start_by_name(monkeypatch, value):
    monkeypatch.setenv("SERVICE_REGISTRY", value)
    with pytest.raises(ValueError, match=f"SERVICE_REGISTRY must be an http:// URL .*not '{value}'"):
        Config.from_env("order")


@pytest.mark.parametrize(("value", "kept"), [("", ""), ("http://registry:5000/", "http://registry:5000")])
def test_an_empty_registry_url_stands_alone_and_a_good_one_is_kept(monkeypatch, value, kept):
    monkeypatch.setenv("SERVICE_REGISTRY", value)
    assert Config.from_env("order").service_registry == kept


def test_a_client_gets_half_the_gateways_connections_and_all_of_an_instances(monkeypatch):
    for name in ("WORKER_CONNECTIONS", "MAX_CONNECTIONS_PER_CLIENT"):
        monkeypatch.delenv(name, raising=False)
    assert Config.from_env("gateway").max_connections_per_client == 128
    # Behind the gateway its one client is the gateway: refusing its pool would eject the instance.
    assert Config.from_env("product").max_connections_per_client == 256
    monkeypatch.setenv("MAX_CONNECTIONS_PER_CLIENT", "0")
    with pytest.raises(ValueError, match="MAX_CONNECTIONS_PER_CLIENT must be at least 1"):
        Config.from_env("gateway")


def test_tokens_come_from_their_files_and_never_show_in_the_config(monkeypatch, tmp_path):
    secret = tmp_path / "operator-token"
    secret.write_text("s3cret-operator\n")
    monkeypatch.setenv("SHOPLAB_OPERATOR_TOKEN_FILE", str(secret))
    monkeypatch.setenv("SHOPLAB_OPERATOR_TOKEN", "ignored-when-a-file-is-named")
    monkeypatch.setenv("SHOPLAB_REGISTRY_TOKEN", "s3cret-registry")
    monkeypatch.delenv("SHOPLAB_REGISTRY_TOKEN_FILE", raising=False)
    config = Config.from_env("order")
    assert (config.operator_token, config.registry_token) == ("s3cret-operator", "s3cret-registry")
    assert "s3cret" not in repr(config)
    monkeypatch.setenv("SHOPLAB_OPERATOR_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="SHOPLAB_OPERATOR_TOKEN_FILE"):
        Config.from_env("order")


def test_a_service_that_guards_writes_refuses_to_start_without_its_token(monkeypatch):
    from shoplab.registry import create_app

    for name in ("SHOPLAB_REGISTRY_TOKEN", "SHOPLAB_REGISTRY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="SHOPLAB_REGISTRY_TOKEN"):
        create_app(Config.from_env("registry"))
