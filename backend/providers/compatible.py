"""OpenAI-compatible servers (vLLM, Ollama, LiteLLM proxy, ...): the OpenAI provider at another URL.

Differences from :mod:`backend.providers.openai_provider`:

* the endpoint is the version's ``base_url``, else ``OPENAI_BASE_URL`` (one of them is required);
* the key is ``OPENAI_API_KEY`` when set, else the placeholder ``"not-needed"`` (local servers ignore it);
* ``max_tokens`` is sent as ``max_tokens`` (what these servers understand);
* not every server supports strict ``json_schema`` output.  When a server answers 400 to it, the
  call is repeated with ``{"type": "json_object"}`` and the schema in the system prompt, then with
  the schema in the prompt only; the first format the server accepts is remembered per base URL
  for the life of the process, so later calls go straight to it.
"""
from __future__ import annotations

import threading

import openai

from core.errors import ConfigError
from backend.providers.openai_provider import JSON_OBJECT, JSON_SCHEMA, PROMPT_ONLY, OpenAIProvider

_MODES = (JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY)
_ACCEPTED: dict[str, str] = {}  # base_url -> the format mode that server accepted
_LOCK = threading.Lock()


class CompatibleProvider(OpenAIProvider):
    name = "openai-compatible"
    max_tokens_param = "max_tokens"

    def __init__(self, version, settings):
        if not (version.base_url or settings.openai_base_url):
            raise ConfigError(
                f"version {version.id!r} uses provider openai-compatible but has no base_url; add "
                "`base_url: http://host:port/v1` to the version or set OPENAI_BASE_URL"
            )
        super().__init__(version, settings)

    def api_key(self) -> str:
        return self.settings.openai_api_key or "not-needed"

    def format_mode(self) -> str:
        with _LOCK:
            return _ACCEPTED.get(self.base_url, JSON_SCHEMA)

    def on_format_rejected(self, mode: str, exc: openai.BadRequestError) -> str | None:
        i = _MODES.index(mode)
        return _MODES[i + 1] if i + 1 < len(_MODES) else None

    def remember_mode(self, mode: str) -> None:
        with _LOCK:
            _ACCEPTED[self.base_url] = mode


def accepted_format(base_url: str) -> str | None:
    """The answer format remembered for ``base_url`` (``json_schema``/``json_object``/``prompt``), if any."""
    with _LOCK:
        return _ACCEPTED.get(base_url.rstrip("/"))
