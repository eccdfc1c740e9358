"""The part of every app factory that is the same for all services."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Flask, Response, jsonify

from shoplab.core.config import Config
from shoplab.core.logs import AccessFile, configure_logging, install_request_logging
from shoplab.core.problems import problem, register_error_handlers


def create_base_app(config: Config, ready_check: Callable[[], dict[str, bool]]) -> Flask:
    """A Flask app with JSON logs, problem+json errors, /health and /ready.

    `ready_check` returns {dependency: ok}; /ready is 200 when every *required* one is ok. Optional
    dependencies (Redis for the product service) are named with a leading '~' and only reported.
    """
    access_file = None
    if config.access_log_file:
        access_file = AccessFile(config.access_log_file, config.access_log_max_bytes, config.access_log_keep)
    try:
        configure_logging(
            config.service,
            config.instance_id,
            config.log_level,
            access_log=config.access_log,
            access_log_flush=config.access_log_flush,
            access_log_file=access_file,
        )
    except OSError as error:
        raise RuntimeError(f"ACCESS_LOG_FILE {config.access_log_file}: {error.strerror}") from error
    app = Flask(f"shoplab.{config.service}")
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    app.config["SHOPLAB"] = config
    app.json.sort_keys = False
    app.json.compact = True
    # No redirects at all: behind the gateway a redirect would name the instance's internal address.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    register_error_handlers(app)
    install_request_logging(app)

    probes = Blueprint("probes", __name__)

    @probes.get("/health")
    def health() -> Response:
        return jsonify(status="ok", service=config.service, instance=config.instance_id)

    @probes.get("/ready")
    def ready() -> Response:
        checks = ready_check()
        required_ok = all(ok for name, ok in checks.items() if not name.startswith("~"))
        report = {name.lstrip("~"): "ok" if ok else "down" for name, ok in checks.items()}
        if not required_ok:
            return problem(503, "A dependency is not answering.", checks=report)
        return jsonify(status="ready", service=config.service, instance=config.instance_id, checks=report)

    app.register_blueprint(probes)
    return app
