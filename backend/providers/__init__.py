"""LLM providers: a registry of small modules behind one interface (:class:`base.Provider`).

>>> from backend.providers import ProviderPool
>>> pool = ProviderPool()                                   # one per process, held by the Predictor
>>> provider = pool.provider(version, settings)             # doctest: +SKIP
>>> provider.complete(system=..., parts=[TextPart("...")], schema={...})   # doctest: +SKIP

``PROVIDERS`` maps a version's ``provider:`` value to its class; it is the only list of
provider names (``backend.versions`` checks a version's ``provider:`` and ``params:``
against it).  Adding a provider = one module + one line here.  SDK clients (and their
connection pools) live in the :class:`ProviderPool`, shared per (provider, base URL, key);
a provider object is cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from backend.providers.anthropic_provider import AnthropicProvider
from backend.providers.base import Completion, ImagePart, Provider, TextPart, Usage
from backend.providers.compatible import CompatibleProvider
from backend.providers.openai_provider import OpenAIProvider
from backend.providers.pool import ProviderPool
from core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from backend.versions import PromptVersion
    from core.settings import Settings

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "openai-compatible": CompatibleProvider,
}

__all__ = ["PROVIDERS", "ProviderPool", "make_provider", "provider_class", "Provider", "Completion", "Usage",
           "TextPart", "ImagePart"]


def provider_class(version: "PromptVersion") -> type[Provider]:
    """The class registered for ``version.provider``; ConfigError naming the choices when there is none."""
    try:
        return PROVIDERS[version.provider]
    except KeyError:
        raise ConfigError(
            f"version {version.id!r}: unknown provider {version.provider!r}; use one of {', '.join(PROVIDERS)}"
        ) from None


def make_provider(version: "PromptVersion", settings: "Settings", pool: ProviderPool | None = None) -> Provider:
    """The provider for ``version`` (a PromptVersion), configured from ``settings``.

    Its SDK client and format memory live in ``pool`` (a new, private pool when None: pass the
    process's pool to share connections).  Raises :class:`ConfigError` for an unknown provider
    name or an openai-compatible version without a base URL, :class:`~core.errors.VersionError`
    for ``params`` the provider does not take.
    """
    return (pool if pool is not None else ProviderPool()).provider(version, settings)
