"""The one small interface every LLM provider implements.

A provider turns (system prompt, user parts, JSON schema) into a parsed JSON
object plus the tokens and time it cost::

    pool = ProviderPool()                                # one per process (backend.providers.pool)
    provider = pool.provider(version, settings)          # or make_provider(version, settings, pool)
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
import json
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Union

from backend.limits import DEFAULT_OUTPUT_TOKENS, LEASE_MARGIN_S, Limits
from backend.providers.options import ProviderOptions
from backend.providers.pool import ProviderPool
from backend.providers.retry import MAX_RETRY_AFTER_S, is_rate_limit, retry_wait
from core.errors import AuthError, OutputError, ProviderError, ProviderTimeout, RateLimitError
from core.secrets import mask

if TYPE_CHECKING:  # pragma: no cover
    from backend.versions import PromptVersion
    from core.settings import Settings

log = logging.getLogger(__name__)
NO_LIMITS = Limits()


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
    """A successful call: ``data`` is the parsed JSON object, ``raw`` the text it came from;
    ``logprobs`` the (token, log-probability) pairs of ``raw`` when the provider returned them."""

    data: dict
    usage: Usage
    raw: str
    logprobs: list[tuple[str, float]] | None = None


class Provider(ABC):
    """Base class: one instance per prompt version; process state lives in a :class:`ProviderPool`.

    :meth:`complete` owns the call: the format fallback loop, timing, error mapping and
    remembering the format a server accepted.  A subclass supplies only

    * :attr:`Options` (the typed ``params:`` it takes), :attr:`sdk`, :attr:`modes`;
    * where its key and endpoint come from (:meth:`api_key`, :meth:`configured_base_url`)
      and how to build its SDK client (:meth:`new_client`);
    * :meth:`request` (the SDK keyword arguments for a format mode) and :meth:`send` (the SDK call);
    * :meth:`next_mode` (the mode to try when the server rejects one with a 400);
    * :meth:`read_usage` and :meth:`read_answer` (tokens and the answer from the response).
    """

    name: ClassVar[str] = ""
    key_env: ClassVar[str] = ""  # the env var a user sets for this provider's key
    default_base_url: ClassVar[str] = ""
    sdk: ClassVar[Any] = None  # the ``openai`` or ``anthropic`` module
    sdk_exception: ClassVar[type[Exception]] = Exception  # the root of its errors, e.g. ``openai.OpenAIError``
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions
    modes: ClassVar[tuple[str, ...]] = ("default",)  # answer-format modes, best first

    def __init__(self, version: "PromptVersion", settings: "Settings", pool: ProviderPool | None = None):
        self.version = version
        self.settings = settings
        self.pool = pool if pool is not None else ProviderPool()
        self.options = self.Options.parse(version.params, where=f"version {version.id!r}", provider=self.name)
        self.base_url = (version.base_url or self.configured_base_url() or self.default_base_url).rstrip("/")
        self._sdk_client: Any = None

    # --- what a subclass supplies --------------------------------------------
    @abstractmethod
    def api_key(self) -> str | None:
        """The API key to send (from ``settings``), or None when it is not set."""

    @abstractmethod
    def new_client(self, key: str) -> Any:
        """A new SDK client for ``self.base_url`` with ``key`` (and no retries of its own)."""

    @abstractmethod
    def request(self, *, system: str, parts: list[Part], schema: dict, schema_name: str, mode: str) -> dict:
        """The SDK keyword arguments asking for ``schema`` in format ``mode``."""

    @abstractmethod
    def send(self, client: Any, kwargs: dict) -> Any:
        """Make the SDK call with ``kwargs``; returns the SDK response."""

    @abstractmethod
    def read_usage(self, response: Any) -> tuple[int, int]:
        """(input tokens, output tokens) of ``response``."""

    @abstractmethod
    def read_answer(self, response: Any, usage: Usage, mode: str) -> Completion:
        """The parsed answer; raises OutputError/RefusalError/TruncatedError with ``usage``."""

    def next_mode(self, mode: str, exc: Exception) -> str | None:
        """The mode to try after the server rejected ``mode`` with ``exc`` (a 400); None = give up."""
        return None

    def format_key(self) -> tuple | None:
        """What the accepted format is remembered per (e.g. the base URL), or None to not remember."""
        return None

    def configured_base_url(self) -> str | None:
        """The endpoint from ``settings`` when the version names none (``*_BASE_URL``)."""
        return None

    # --- the call -------------------------------------------------------------
    def format_mode(self) -> str:
        """The format to ask for first: the one remembered for :meth:`format_key`, else the best."""
        key = self.format_key()
        remembered = self.pool.accepted_format(key) if key is not None else None
        return remembered or self.modes[0]

    def complete(self, *, system: str, parts: list[Part], schema: dict, schema_name: str = "labels",
                 deadline: float | None = None) -> Completion:
        """Ask the model for one JSON object matching ``schema``.  Raises core.errors on failure.

        Every attempt passes the gates of :mod:`backend.limits` (the model's limits, shared across
        processes, and MAX_CALLS_IN_FLIGHT); failed attempts are retried as :mod:`.retry` says.
        Waiting never goes past ``deadline`` (a ``time.monotonic()`` value; default
        PREDICT_DEADLINE from now): a call that gets no slot in time raises DeadlineError.
        """
        client = self.client()
        mode = self.format_mode()
        start = time.perf_counter()
        deadline = time.monotonic() + self.settings.predict_deadline if deadline is None else deadline
        retries, waited = 0, 0.0
        while True:
            kwargs = self.request(system=system, parts=parts, schema=schema, schema_name=schema_name, mode=mode)
            if retries:  # the header the SDKs send on their own retries
                kwargs["extra_headers"] = {"x-stainless-retry-count": str(retries)}
            try:
                response = self.attempt(client, kwargs, lambda: self.estimate_tokens(system, parts, schema), deadline)
                break
            except self.sdk.BadRequestError as exc:
                fallback = self.next_mode(mode, exc)
                if fallback is None:
                    raise self.sdk_error(exc, start, retries + 1) from None
                log.info("%s rejected answer format %s for %s; trying %s", self.base_url, mode,
                         self.version.model, fallback)
                mode = fallback
            except self.sdk_exception as exc:
                wait = self.retry_wait(exc, retries, waited, deadline)
                if wait is None:
                    raise self.sdk_error(exc, start, retries + 1) from None
                retries, waited = retries + 1, waited + wait
                time.sleep(wait)
        key = self.format_key()
        if key is not None:
            self.pool.remember_format(key, mode)
        tokens_in, tokens_out = self.read_usage(response)
        usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out, latency_s=time.perf_counter() - start)
        log.debug("%s %s: %d in, %d out tokens, %.2fs", self.version.id, self.version.model,
                  usage.input_tokens, usage.output_tokens, usage.latency_s)
        return self.read_answer(response, usage, mode)

    # --- limits and retries (backend.limits, .retry) ------------------------------
    @property
    def limit_scope(self) -> str:
        """Whose budget a call spends: ``provider|base URL|model`` (versions of one model share it)."""
        return f"{self.name}|{self.base_url}|{self.version.model}"

    def attempt(self, client: Any, kwargs: dict, estimate: Callable[[], int], deadline: float) -> Any:
        """One SDK call once the gates let it through; the lease learns the tokens it used."""
        gates = self.pool.gates(self.settings)
        limits = self.version.limits or NO_LIMITS
        with gates.call(self.limit_scope, limits, estimate, deadline, self.timeout + LEASE_MARGIN_S) as lease:
            response = self.send(client, kwargs)
            lease.used = sum(self.read_usage(response))
        return response

    def retry_wait(self, exc: Exception, retries: int, waited: float, deadline: float) -> float | None:
        """Seconds before the next attempt after ``exc``, or None to give up (see :mod:`.retry`).

        A 429 also cools the model down for everyone sharing its limits."""
        wait = retry_wait(exc, self.sdk, retries)
        if is_rate_limit(exc, self.sdk):
            cool = min(wait if wait is not None else MAX_RETRY_AFTER_S, MAX_RETRY_AFTER_S)
            self.pool.gates(self.settings).cool_down(self.limit_scope, self.version.limits or NO_LIMITS, cool)
        if wait is None or retries >= self.max_retries or waited + wait > self.settings.provider_retry_max_wait:
            return None
        return wait if time.monotonic() + wait < deadline else None

    def estimate_tokens(self, system: str, parts: list[Part], schema: dict) -> int:
        """The tokens a call may use, before making it (for tpm): text / 4, 85 per image, the output budget."""
        chars = len(system) + len(json.dumps(schema)) + sum(len(p.text) for p in parts if isinstance(p, TextPart))
        images = sum(isinstance(p, ImagePart) for p in parts)
        return math.ceil(chars / 4) + 85 * images + (getattr(self.options, "max_tokens", None) or DEFAULT_OUTPUT_TOKENS)

    def client(self) -> Any:
        """The SDK client with this version's timeout (no retries of its own), made on first use.

        Its connection pool is shared per (provider, base URL, key) through :attr:`pool`.
        Raises :class:`~core.errors.AuthError` naming :attr:`key_env` when no key is set.
        """
        if self._sdk_client is None:
            key = self.api_key()
            if not key:
                raise AuthError(f"{self.key_env} is not set; set it to use the {self.where()}", usage=Usage())
            base = self.pool.client(self.name, self.base_url, key, lambda: self.new_client(key))
            self._sdk_client = base.with_options(timeout=self.timeout, max_retries=0)  # complete() retries
        return self._sdk_client

    # --- helpers shared by the implementations ------------------------------
    @property
    def timeout(self) -> float:
        """Seconds per attempt: ``params.timeout`` or ``PROVIDER_TIMEOUT``."""
        t = self.options.timeout
        return float(t if t is not None else self.settings.provider_timeout)

    @property
    def max_retries(self) -> int:
        """Retries on 429/5xx/timeouts (:mod:`.retry`): ``params.max_retries`` or ``PROVIDER_MAX_RETRIES``."""
        r = self.options.max_retries
        return int(r if r is not None else self.settings.provider_max_retries)

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``***``."""
        return mask(text, self.settings.secrets())

    def where(self) -> str:
        """``'openai API at https://... (model gpt-4o-mini, version v1)'`` for error messages."""
        return f"{self.name} API at {self.base_url} (model {self.version.model}, version {self.version.id})"

    def sdk_error(self, exc: Exception, start: float, tries: int = 1) -> Exception:
        """Map an exception of :attr:`sdk` to :mod:`core.errors`, with the time spent since ``start``.

        Both SDKs name their errors alike (``APITimeoutError``, ``APIConnectionError``,
        ``APIStatusError``), so one mapping serves every provider.
        """
        usage = Usage(latency_s=time.perf_counter() - start)
        where = self.where()
        if isinstance(exc, self.sdk.APITimeoutError):
            return ProviderTimeout(
                f"no answer from the {where} within {self.timeout:g}s (tried {tries} times); "
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
    except json.JSONDecodeError as exc:
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
            f"the {where} answered 429 Too Many Requests (retries: at most {provider.max_retries}); set the "
            "version's `limits:` (rpm, tpm) to the account's rate limits, or raise PROVIDER_MAX_RETRIES", usage=usage)
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
