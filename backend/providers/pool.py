"""The providers' process state, owned by whoever builds the Predictor (one pool per process).

A :class:`ProviderPool` holds what outlives one call:

* the SDK clients, one per (provider, base URL, key hash): one connection pool each, shared
  by every version that talks to the same endpoint with the same key;
* the answer format each server accepted, so a server that rejected strict ``json_schema``
  (openai-compatible, per base URL) or ``output_config`` (anthropic, per base URL and model)
  is asked the accepted way straight away next time;
* the :class:`~backend.limits.Gates` every call passes (the models' limits, in Redis when
  ``REDIS_URL`` is set, and the process's ``MAX_CALLS_IN_FLIGHT``), made from the first settings.

Two pools share nothing, so tests (and two backends in one process) do not see each other.

>>> pool = ProviderPool()
>>> pool.remember_format(("openai-compatible", "http://h/v1"), "json_object")
>>> pool.accepted_format(("openai-compatible", "http://h/v1")), ProviderPool().accepted_format(("x",))
('json_object', None)
"""
from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any, Callable

from backend.limits import Gates

if TYPE_CHECKING:  # pragma: no cover
    from backend.providers.base import Provider
    from backend.versions import PromptVersion
    from core.settings import Settings


class ProviderPool:
    """SDK clients and accepted-format memory for the providers made through it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._formats: dict[tuple, str] = {}
        self._gates: Gates | None = None

    def gates(self, settings: "Settings") -> Gates:
        """The gates of this pool's calls, made from ``settings`` on first use."""
        with self._lock:
            if self._gates is None:
                self._gates = Gates(settings)
            return self._gates

    def provider(self, version: "PromptVersion", settings: "Settings") -> "Provider":
        """The provider for ``version`` using this pool (same signature as ``make_provider``)."""
        from backend.providers import provider_class

        return provider_class(version)(version, settings, pool=self)

    def client(self, provider: str, base_url: str, api_key: str, factory: Callable[[], Any]) -> Any:
        """The SDK client for (provider, base_url, key), built by ``factory`` on first use.

        The key enters the cache key only as a hash, so two keys never share a client.
        """
        key = (provider, base_url, hashlib.sha256(api_key.encode()).hexdigest())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = factory()
            return client

    def accepted_format(self, key: tuple) -> str | None:
        """The format mode remembered for ``key`` (a provider's :meth:`format_key`), if any."""
        with self._lock:
            return self._formats.get(key)

    def remember_format(self, key: tuple, mode: str) -> None:
        """Remember that the server behind ``key`` accepted ``mode``."""
        with self._lock:
            self._formats[key] = mode
