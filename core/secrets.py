"""Secret masking, written once: in text (:func:`mask`) and in every log record (:class:`SecretFilter`).

The secrets are the configured values of ``Settings.secrets()``: the provider API keys,
the Label Studio key (its access token) and the basic-auth password.  Each one is
replaced by ``***`` wherever it appears.

Every process entry point (``python -m backend``, ``backend.wsgi``, ``python -m
scoring``) calls :func:`install_log_filter` once at start-up.  From then on every log
record of every logger -- this project's, the SDKs' (``httpx``, ``openai``,
``label_studio_sdk``...), RQ's, gunicorn's -- is masked when it is created: its message
with the arguments merged in, the traceback of an exception it carries, and its stack
text.  The filter is applied through the log-record factory, not to some handlers, so
it also covers handlers and loggers configured later (RQ's worker sets up its own).

>>> mask("Authorization: Bearer sk-123456 for sk-123", ["sk-123", "sk-123456"])
'Authorization: Bearer *** for ***'
"""
from __future__ import annotations

import logging
from typing import Iterable

from core.settings import Settings

MASK = "***"


def _ordered(secrets: Iterable[str | None]) -> list[str]:
    """Distinct non-empty secrets, longest first (so a secret containing another is masked whole)."""
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced by ``***`` (empty and ``None`` secrets are ignored)."""
    for secret in _ordered(secrets):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """A ``logging.Filter`` that masks ``secrets`` in a record; it never drops a record.

    The message is formatted once here (``record.getMessage()``) and stored masked with
    no arguments left; an exception's traceback is formatted into ``record.exc_text``
    (which formatters use as is) and masked.
    """

    def __init__(self, secrets: Iterable[str | None]):
        super().__init__()
        self.secrets = _ordered(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging's own error report
            return True
        record.msg, record.args = mask(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = mask(record.stack_info, self.secrets)
        return True


_installed: SecretFilter | None = None


def install_log_filter(settings: Settings | None = None) -> SecretFilter:
    """Mask ``settings.secrets()`` (default: from the environment) in every log record of this process.

    Wraps the log-record factory, so records of every logger, for every handler, are
    masked.  Calling it again replaces the secrets (it never stacks filters).
    """
    global _installed
    settings = settings or Settings.from_env()
    if _installed is not None:
        _installed.secrets = _ordered(settings.secrets())
        return _installed
    secret_filter = SecretFilter(settings.secrets())
    make_record = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        secret_filter.filter(record)
        return record

    factory.masks_secrets = make_record  # type: ignore[attr-defined]  # what uninstall_log_filter puts back
    logging.setLogRecordFactory(factory)
    _installed = secret_filter
    return secret_filter


def uninstall_log_filter() -> None:
    """Undo :func:`install_log_filter` (tests)."""
    global _installed
    factory = logging.getLogRecordFactory()
    previous = getattr(factory, "masks_secrets", None)
    if previous is not None:
        logging.setLogRecordFactory(previous)
    _installed = None
