"""LLM providers: a registry of small modules behind one interface (:class:`base.Provider`).

>>> from backend.providers import make_provider
>>> provider = make_provider(version, settings)        # doctest: +SKIP
>>> provider.complete(system=..., parts=[TextPart("...")], schema={...})   # doctest: +SKIP

``PROVIDERS`` maps a version's ``provider:`` value to its class.  SDK clients (and their
connection pools) are shared per (provider, base URL, key); a provider object is cheap.
"""
from __future__ import annotations

from core.errors import ConfigError
from backend.providers.anthropic_provider import AnthropicProvider
from backend.providers.base import Completion, ImagePart, Provider, TextPart, Usage
from backend.providers.compatible import CompatibleProvider
from backend.providers.openai_provider import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "openai-compatible": CompatibleProvider,
}

__all__ = ["PROVIDERS", "make_provider", "Provider", "Completion", "Usage", "TextPart", "ImagePart"]


def make_provider(version, settings) -> Provider:
    """The provider for ``version`` (a PromptVersion), configured from ``settings``.

    Raises :class:`ConfigError` for an unknown provider name or an openai-compatible
    version without a base URL.
    """
    try:
        cls = PROVIDERS[version.provider]
    except KeyError:
        raise ConfigError(
            f"version {version.id!r}: unknown provider {version.provider!r}; use one of {', '.join(PROVIDERS)}"
        ) from None
    return cls(version, settings)
