"""The HTTP server stack the services run under gunicorn's arbiter (README.md in this folder says what
each part replaces and the measurement that keeps it)."""
