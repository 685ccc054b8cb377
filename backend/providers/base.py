"""The one small interface every LLM provider implements.

A provider turns (system prompt, user parts, JSON schema) into a parsed JSON
object plus the tokens and time it cost::

    provider = make_provider(version, settings)          # backend.providers
    done = provider.complete(system="You label reviews.",
                             parts=[TextPart("Great phone!")],
                             schema={"type": "object", ...})
    done.data        # {"sentiment": "positive"}
    done.usage       # Usage(input_tokens=31, output_tokens=9, latency_s=0.41)

Failures are raised as :mod:`core.errors` classes (never SDK exceptions);
errors raised by ``complete()`` carry ``err.usage`` with the tokens spent
(0 when none) and the time the call took, so the ledger can record them.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Union

from core.errors import AuthError, OutputError, ProviderError, ProviderTimeout, RateLimitError
from core.secrets import mask

if TYPE_CHECKING:  # pragma: no cover
    from core.settings import Settings
    from backend.versions import PromptVersion


@dataclass(frozen=True)
class TextPart:
    """A piece of text in the user message."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image in the user message: a public ``url`` or inline ``data`` bytes."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    media_type: str | None = None

    def __post_init__(self):
        if (self.url is None) == (self.data is None):
            raise ValueError("ImagePart needs exactly one of url= or data=")

    def mime(self) -> str:
        """The media type: the given one, else sniffed from the bytes' magic number (PNG/JPEG/GIF/WebP)."""
        if self.media_type:
            return self.media_type
        return sniff_media_type(self.data or b"") or "image/png"

    def b64(self) -> str:
        """The inline bytes, base64-encoded (ASCII)."""
        return base64.b64encode(self.data or b"").decode("ascii")

    def data_url(self) -> str:
        """``data:<mime>;base64,<...>`` for inline bytes, or the plain URL."""
        if self.url is not None:
            return self.url
        return f"data:{self.mime()};base64,{self.b64()}"


Part = Union[TextPart, ImagePart]


def sniff_media_type(data: bytes) -> str | None:
    """Guess an image media type from its first bytes, e.g. ``b"\\x89PNG..." -> "image/png"``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass
class Usage:
    """Tokens and wall time of one provider call (retries included)."""

    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0


@dataclass
class Completion:
    """A successful call: ``data`` is the parsed JSON object, ``raw`` the text it came from."""

    data: dict
    usage: Usage
    raw: str


class Provider(ABC):
    """Base class: one instance per prompt version (SDK connection pools are shared, see
    :func:`shared_client`).

    A subclass names its SDK module (:attr:`sdk`, for error mapping), builds its SDK client
    (:meth:`new_client`) and says where its key and endpoint come from
    (:meth:`api_key`, :meth:`configured_base_url`); :meth:`client` does the rest.
    """

    name: ClassVar[str] = ""
    key_env: ClassVar[str] = ""  # the env var a user sets for this provider's key
    default_base_url: ClassVar[str] = ""
    sdk: ClassVar[Any] = None  # the ``openai`` or ``anthropic`` module

    def __init__(self, version: "PromptVersion", settings: "Settings"):
        self.version = version
        self.settings = settings
        self.base_url = (version.base_url or self.configured_base_url() or self.default_base_url).rstrip("/")
        self._sdk_client: Any = None

    @abstractmethod
    def complete(self, *, system: str, parts: list[Part], schema: dict, schema_name: str = "labels") -> Completion:
        """Ask the model for one JSON object matching ``schema``; see the module docstring."""

    @abstractmethod
    def api_key(self) -> str | None:
        """The API key to send (from ``settings``), or None when it is not set."""

    @abstractmethod
    def new_client(self, key: str) -> Any:
        """A new SDK client for ``self.base_url`` with ``key`` (and no retries of its own)."""

    def configured_base_url(self) -> str | None:
        """The endpoint from ``settings`` when the version names none (``*_BASE_URL``)."""
        return None

    def client(self) -> Any:
        """The SDK client with this version's timeout and retries, made on first use.

        Its connection pool is shared per (provider, base URL, key).  Raises
        :class:`~core.errors.AuthError` naming :attr:`key_env` when no key is set.
        """
        if self._sdk_client is None:
            key = self.api_key()
            if not key:
                raise AuthError(f"{self.key_env} is not set; set it to use the {self.where()}", usage=Usage())
            base = shared_client(self.name, self.base_url, key, lambda: self.new_client(key))
            self._sdk_client = base.with_options(timeout=self.timeout, max_retries=self.max_retries)
        return self._sdk_client

    # --- helpers shared by the implementations ------------------------------
    @property
    def timeout(self) -> float:
        """Seconds per attempt: ``params.timeout`` or ``PROVIDER_TIMEOUT``."""
        return float(self.version.params.get("timeout", self.settings.provider_timeout))

    @property
    def max_retries(self) -> int:
        """SDK retries on 429/5xx/timeouts: ``params.max_retries`` or ``PROVIDER_MAX_RETRIES``."""
        return int(self.version.params.get("max_retries", self.settings.provider_max_retries))

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``***``."""
        return mask(text, self.settings.secrets())

    def where(self) -> str:
        """``'openai API at https://... (model gpt-4o-mini, version v1)'`` for error messages."""
        return f"{self.name} API at {self.base_url} (model {self.version.model}, version {self.version.id})"

    def sdk_error(self, exc: Exception, start: float) -> Exception:
        """Map an exception of :attr:`sdk` to :mod:`core.errors`, with the time spent since ``start``.

        Both SDKs name their errors alike (``APITimeoutError``, ``APIConnectionError``,
        ``APIStatusError``), so one mapping serves every provider.
        """
        usage = Usage(latency_s=time.perf_counter() - start)
        where = self.where()
        if isinstance(exc, self.sdk.APITimeoutError):
            return ProviderTimeout(
                f"no answer from the {where} within {self.timeout:g}s (tried {self.max_retries + 1} times); "
                "raise params.timeout or PROVIDER_TIMEOUT", usage=usage)
        if isinstance(exc, self.sdk.APIConnectionError):
            return ProviderError(
                f"could not connect to the {where}; check the base_url and that the server is running", usage=usage)
        if isinstance(exc, self.sdk.APIStatusError):
            return status_error(self, exc.status_code, server_message(exc), usage)
        return ProviderError(f"the {where} failed: {self.redact(type(exc).__name__)}", usage=usage)


_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.S)


def parse_json_object(raw: str | None, usage: Usage, where: str) -> dict:
    """Parse the model's text as one JSON object (a surrounding ```json fence is tolerated).

    >>> parse_json_object('{"a": 1}', Usage(), "x")
    {'a': 1}

    Raises :class:`OutputError` (with ``usage``) for empty text, invalid JSON or a non-object.
    """
    text = (raw or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise OutputError(f"the {where} returned an empty answer", usage=usage)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OutputError(
            f"the {where} returned text that is not valid JSON ({exc.msg} at char {exc.pos}); "
            "the task gets no pre-label", usage=usage
        ) from None
    if not isinstance(data, dict):
        raise OutputError(
            f"the {where} returned JSON {type(data).__name__}, expected an object", usage=usage
        )
    return data


def status_error(provider: Provider, status: int, server_message: str, usage: Usage) -> Exception:
    """The :mod:`core.errors` exception for an HTTP error status from a provider.

    >>> # 401 -> AuthError naming the env var, 429 -> RateLimitError, other -> ProviderError
    """
    where = provider.where()
    if status == 401:
        return AuthError(f"the {where} rejected the API key (HTTP 401); set {provider.key_env} to a valid key",
                         usage=usage)
    if status == 403:
        return AuthError(f"the {where} refused access (HTTP 403); check that the key in {provider.key_env} "
                         f"may use model {provider.version.model}", usage=usage)
    if status == 429:
        return RateLimitError(
            f"the {where} still answered 429 Too Many Requests after {provider.max_retries} retries; lower "
            "PREDICT_CONCURRENCY, raise PROVIDER_MAX_RETRIES or check the account's rate limits", usage=usage)
    detail = provider.redact(" ".join((server_message or "").split()))[:300]
    hint = " (check the model name)" if status == 404 else ""
    return ProviderError(f"the {where} answered HTTP {status}{hint}: {detail}", usage=usage)


def server_message(exc) -> str:
    """The error text of an SDK status error: ``body.error.message``, else the SDK's message."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return getattr(exc, "message", "") or ""


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(provider: str, base_url: str, api_key: str, factory: Callable[[], Any]) -> Any:
    """One SDK client (and so one connection pool) per (provider, base_url, key), built by ``factory``.

    The key enters the cache key only as a hash, so two Settings with different keys never share a client.
    """
    key = (provider, base_url, hashlib.sha256(api_key.encode()).hexdigest())
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = factory()
        return client
