"""OpenAI-compatible servers (vLLM, Ollama, LiteLLM proxy, ...): the OpenAI provider at another URL.

Differences from :mod:`backend.providers.openai_provider`:

* the endpoint is the version's ``base_url``, else ``OPENAI_BASE_URL`` (one of them is required);
* the key is ``OPENAI_API_KEY`` when set, else the placeholder ``"not-needed"`` (local servers ignore it);
* ``max_tokens`` is sent as ``max_tokens`` (what these servers understand);
* not every server supports strict ``json_schema`` output.  When a server answers 400 to it, the
  call is repeated with ``{"type": "json_object"}`` and the schema in the system prompt, then with
  the schema in the prompt only; the first format the server accepts is remembered per base URL
  in the :class:`~backend.providers.pool.ProviderPool`, so later calls go straight to it.
"""
from __future__ import annotations

from backend.providers.openai_provider import JSON_OBJECT, JSON_SCHEMA, PROMPT_ONLY, OpenAIProvider
from core.errors import ConfigError


class CompatibleProvider(OpenAIProvider):
    name = "openai-compatible"
    max_tokens_param = "max_tokens"
    modes = (JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY)

    def __init__(self, version, settings, pool=None):
        if not (version.base_url or settings.openai_base_url):
            raise ConfigError(
                f"version {version.id!r} uses provider openai-compatible but has no base_url; add "
                "`base_url: http://host:port/v1` to the version or set OPENAI_BASE_URL"
            )
        super().__init__(version, settings, pool)

    def api_key(self) -> str:
        return self.settings.openai_api_key or "not-needed"

    def format_key(self) -> tuple:
        return (self.name, self.base_url)

    def next_mode(self, mode: str, exc: Exception) -> str | None:
        i = self.modes.index(mode)
        return self.modes[i + 1] if i + 1 < len(self.modes) else None
