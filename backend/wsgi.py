"""WSGI entry point: ``gunicorn -w 2 --threads 8 -b 127.0.0.1:9090 backend.wsgi:app``.

Reads the settings from the environment at import; a bad versions file stops
the start with a one-line error.
"""
from backend.app import create_app
from core.secrets import install_log_filter

install_log_filter()  # mask the configured secrets in every log record (core.secrets)
app = create_app()
