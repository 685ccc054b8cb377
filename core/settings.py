"""The one module that reads environment variables.

Everything else receives a :class:`Settings` object.  Every variable, its
default and its meaning is listed here and in the README ("Configuration").

Provider API keys are read from the providers' own standard variables
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``) and handed to the official SDK
clients explicitly; they are never logged, stored or put in an error message
(``Settings.__repr__`` masks them).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping

from core.errors import ConfigError


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _parsed(env: Mapping[str, str], name: str, default, parse, what: str):
    """``parse(env[name])``, ``default`` when unset or empty; ConfigError naming the variable otherwise.

    >>> _parsed({"N": "3"}, "N", 1, int, "a whole number"), _parsed({}, "N", 1, int, "a whole number")
    (3, 1)
    """
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}; set it to e.g. {default}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_parsed(env, name, default, int, "a whole number"))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return float(_parsed(env, name, default, float, "a number"))


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ConfigError(f"{name}={value:g} must be more than 0; set it to e.g. {default:g}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = (env.get(name) or allowed[0]).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
    return raw


SECRET_FIELDS = ("openai_api_key", "anthropic_api_key", "label_studio_api_key", "basic_auth_pass")


@dataclass(frozen=True)
class Settings:
    # --- prompt versions -------------------------------------------------
    prompts_file: str = "prompts.yaml"          # PROMPTS_FILE
    default_version: str | None = None          # DEFAULT_VERSION (else the file's `default:`)
    # --- providers --------------------------------------------------------
    openai_api_key: str | None = None           # OPENAI_API_KEY
    openai_base_url: str | None = None          # OPENAI_BASE_URL (also used by openai-compatible without base_url)
    anthropic_api_key: str | None = None        # ANTHROPIC_API_KEY
    anthropic_base_url: str | None = None       # ANTHROPIC_BASE_URL
    provider_timeout: float = 60.0              # PROVIDER_TIMEOUT seconds per LLM call
    provider_max_retries: int = 2               # PROVIDER_MAX_RETRIES (SDK retries on 429/5xx/timeouts)
    # --- serving ----------------------------------------------------------
    predict_concurrency: int = 16               # PREDICT_CONCURRENCY parallel LLM calls per /predict
    predict_deadline: float = 90.0              # PREDICT_DEADLINE seconds; Label Studio gives up at 100
    failed_task_result: str = "skip"            # FAILED_TASK_RESULT: skip (no prediction, retried later) | empty
    basic_auth_user: str | None = None          # BASIC_AUTH_USER
    basic_auth_pass: str | None = None          # BASIC_AUTH_PASS
    log_level: str = "INFO"                     # LOG_LEVEL
    # --- Label Studio -----------------------------------------------------
    label_studio_url: str | None = None         # LABEL_STUDIO_URL
    label_studio_api_key: str | None = None     # LABEL_STUDIO_API_KEY
    # --- storage and queue -----------------------------------------------
    redis_url: str | None = None                # REDIS_URL: ledger, history and job queue in Redis
    data_dir: str = "var"                       # DATA_DIR: SQLite ledger/history when REDIS_URL is unset
    queue_name: str = "llm-prelabel"            # RQ_QUEUE
    rescore_debounce: float = 30.0              # RESCORE_DEBOUNCE seconds between webhook-triggered rescoring
    # --- backend HTTP limits -----------------------------------------------
    max_request_mb: float = 20.0                # MAX_REQUEST_MB: largest /predict and /webhook body (413 above)
    max_setup_mb: float = 5.0                   # MAX_SETUP_MB: largest /setup body, i.e. label config (413 above)
    # --- response cache and runs ---
    response_cache: bool = True                 # RESPONSE_CACHE: reuse LLM answers to identical requests (on|off)
    response_cache_ttl_days: float = 30.0       # RESPONSE_CACHE_TTL_DAYS: days a cached answer is kept (0 = forever)
    # --- media (image fetching) ---
    media_fetch_timeout: float = 30.0           # MEDIA_FETCH_TIMEOUT total seconds per image fetch, redirects + body
    media_fetch_concurrency: int = 8            # MEDIA_FETCH_CONCURRENCY image fetches at once per process (pool size)
    media_max_bytes: int = 20 * 1024 * 1024     # MEDIA_MAX_BYTES largest image fetched or inlined
    media_max_redirects: int = 5                # MEDIA_MAX_REDIRECTS redirects followed per image fetch
    allow_internal_image_urls: bool = False     # ALLOW_INTERNAL_IMAGE_URLS: allow loopback/private/bare-name hosts
    # --- Redis outages (core.spool) ---------------------------------------
    spool_dir: str | None = None                # SPOOL_DIR: writes kept while Redis is down (default DATA_DIR/spool)
    redis_timeout: float = 1.0                  # REDIS_TIMEOUT s to connect to / hear from Redis before it is "down"
    redis_retry_after: float = 5.0              # REDIS_RETRY_AFTER s a down Redis is left alone before a new try
    # --- worker recovery ---------------------------------------------------
    worker_dead_after: float = 30.0             # WORKER_DEAD_AFTER seconds without a heartbeat before the job of a
                                                # killed worker is retried and its scheduler taken over (min 3)
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        get = lambda name: env.get(name) or None  # noqa: E731  (empty string == unset)
        return cls(
            prompts_file=env.get("PROMPTS_FILE") or "prompts.yaml",
            default_version=get("DEFAULT_VERSION"),
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            anthropic_api_key=get("ANTHROPIC_API_KEY"),
            anthropic_base_url=get("ANTHROPIC_BASE_URL"),
            provider_timeout=_float(env, "PROVIDER_TIMEOUT", 60.0),
            provider_max_retries=_int(env, "PROVIDER_MAX_RETRIES", 2),
            predict_concurrency=max(1, _int(env, "PREDICT_CONCURRENCY", 16)),
            predict_deadline=_float(env, "PREDICT_DEADLINE", 90.0),
            failed_task_result=_choice(env, "FAILED_TASK_RESULT", ("skip", "empty")),
            basic_auth_user=get("BASIC_AUTH_USER"),
            basic_auth_pass=get("BASIC_AUTH_PASS"),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            label_studio_url=(get("LABEL_STUDIO_URL") or "").rstrip("/") or None,
            label_studio_api_key=get("LABEL_STUDIO_API_KEY"),
            redis_url=get("REDIS_URL"),
            data_dir=env.get("DATA_DIR") or "var",
            queue_name=env.get("RQ_QUEUE") or "llm-prelabel",
            rescore_debounce=_float(env, "RESCORE_DEBOUNCE", 30.0),
            # --- backend HTTP limits ---
            max_request_mb=_positive(env, "MAX_REQUEST_MB", 20.0),
            max_setup_mb=_positive(env, "MAX_SETUP_MB", 5.0),
            # --- response cache and runs ---
            response_cache=_bool(env.get("RESPONSE_CACHE"), True),
            response_cache_ttl_days=max(0.0, _float(env, "RESPONSE_CACHE_TTL_DAYS", 30.0)),
            # --- media (image fetching) ---
            media_fetch_timeout=_float(env, "MEDIA_FETCH_TIMEOUT", 30.0),
            media_fetch_concurrency=max(1, _int(env, "MEDIA_FETCH_CONCURRENCY", 8)),
            media_max_bytes=max(1, _int(env, "MEDIA_MAX_BYTES", 20 * 1024 * 1024)),
            media_max_redirects=max(0, _int(env, "MEDIA_MAX_REDIRECTS", 5)),
            allow_internal_image_urls=_bool(env.get("ALLOW_INTERNAL_IMAGE_URLS"), False),
            # --- Redis outages ---
            spool_dir=get("SPOOL_DIR"),
            redis_timeout=_positive(env, "REDIS_TIMEOUT", 1.0),
            redis_retry_after=_positive(env, "REDIS_RETRY_AFTER", 5.0),
            # --- worker recovery ---
            worker_dead_after=_positive(env, "WORKER_DEAD_AFTER", 30.0),
        )

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    def secrets(self) -> list[str]:
        """The secret values in use, so that log filters and reports can mask them."""
        return [v for v in (getattr(self, f) for f in SECRET_FIELDS) if v]

    def __repr__(self) -> str:  # never print a key
        parts = []
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name in SECRET_FIELDS and v:
                v = "***"
            parts.append(f"{f.name}={v!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__
