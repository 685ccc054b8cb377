"""Anthropic Messages with structured output (official ``anthropic`` SDK).

Request: ``messages.create(model, system, messages=[user], max_tokens,
output_config={"format": {"type": "json_schema", "schema": ...}})``.  Models or
gateways that reject ``output_config`` with a 400 are asked again with a forced tool
(``tools=[{"name", "input_schema"}]``, ``tool_choice={"type": "tool", "name": ...}``),
and that choice is remembered per (base URL, model) for the life of the process.

Images go as ``image`` blocks with a ``url`` source, or ``base64`` for inline bytes.
Version params: max_tokens (required by the API; default 1024), stop (sent as
``stop_sequences``), timeout, max_retries.  ``temperature``, ``top_p`` and ``seed`` are
not sent: the API version that anthropic SDK 2.x speaks (``anthropic-version: 2026-10-21``)
rejects sampling parameters with a 400, and has no seed; a warning is logged once per version.  The key is ``ANTHROPIC_API_KEY``; the endpoint the version's
``base_url``, else ``ANTHROPIC_BASE_URL``, else https://api.anthropic.com.

The SDK's retries honour ``Retry-After`` however long it is; a middleware (the SDK's own
extension point) stops retrying when the server asks for more than
:data:`MAX_RETRY_AFTER_S` seconds, so a prediction thread is never parked for minutes
(the OpenAI SDK has the same rule built in, at 120 s).

Input tokens include cache writes and reads (``cache_creation_input_tokens`` and
``cache_read_input_tokens``), as the API's usage docs define the total.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time

import anthropic

from core.errors import OutputError, RefusalError, TruncatedError
from backend.providers.base import (
    Completion,
    ImagePart,
    Provider,
    TextPart,
    Usage,
    parse_json_object,
    server_message,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1024
MAX_RETRY_AFTER_S = 60.0
OUTPUT_CONFIG, TOOL = "output_config", "tool"
_TOOL_MODE: set[tuple[str, str]] = set()  # (base_url, model) that rejected output_config
_LOCK = threading.Lock()
_WARNED: set[str] = set()
# a 400 that says the structured-output request itself is not supported
_REJECTS_FORMAT = re.compile(r"output_config|output.format|structured.output|json_schema", re.I)


class AnthropicProvider(Provider):
    name = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    sdk = anthropic

    def api_key(self) -> str | None:
        return self.settings.anthropic_api_key

    def configured_base_url(self) -> str | None:
        return self.settings.anthropic_base_url

    def new_client(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, middleware=[cap_retry_after])

    def format_mode(self) -> str:
        with _LOCK:
            return TOOL if (self.base_url, self.version.model) in _TOOL_MODE else OUTPUT_CONFIG

    def request(self, *, system: str, parts, schema: dict, schema_name: str, mode: str) -> dict:
        """The keyword arguments for ``messages.create``."""
        content = []
        for p in parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                if p.url is not None:
                    source = {"type": "url", "url": p.url}
                else:
                    source = {"type": "base64", "media_type": p.mime(), "data": p.b64()}
                content.append({"type": "image", "source": source})
            else:
                raise TypeError(f"unsupported part {type(p).__name__}")
        p = self.version.params
        kwargs: dict = {
            "model": self.version.model,
            "system": system,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": int(p.get("max_tokens") or DEFAULT_MAX_TOKENS),
        }
        ignored = sorted(k for k in ("temperature", "top_p", "seed") if p.get(k) is not None)
        if ignored and self.version.id not in _WARNED:
            _WARNED.add(self.version.id)
            log.warning("version %s: %s not sent to Anthropic (the Messages API no longer accepts them)",
                        self.version.id, ", ".join(ignored))
        if p.get("stop"):
            kwargs["stop_sequences"] = [p["stop"]] if isinstance(p["stop"], str) else list(p["stop"])
        if mode == OUTPUT_CONFIG:
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        else:
            name = tool_name(schema_name)
            kwargs["tools"] = [{
                "name": name,
                "description": "Record the answer for this task. Always call this tool exactly once.",
                "input_schema": schema,
            }]
            kwargs["tool_choice"] = {"type": "tool", "name": name}
        return kwargs

    def complete(self, *, system, parts, schema, schema_name="labels") -> Completion:
        """One structured call; see the module docstring.  Raises core.errors on failure."""
        client = self.client()
        mode = self.format_mode()
        start = time.perf_counter()
        while True:
            try:
                msg = client.messages.create(
                    **self.request(system=system, parts=parts, schema=schema, schema_name=schema_name, mode=mode)
                )
                break
            except anthropic.BadRequestError as exc:
                if mode == OUTPUT_CONFIG and _REJECTS_FORMAT.search(server_message(exc)):
                    log.info("%s rejected output_config for %s; using a forced tool", self.base_url,
                             self.version.model)
                    mode = TOOL
                    continue
                raise self.sdk_error(exc, start) from None
            except anthropic.AnthropicError as exc:
                raise self.sdk_error(exc, start) from None
        if mode == TOOL:
            with _LOCK:
                _TOOL_MODE.add((self.base_url, self.version.model))
        u = msg.usage
        usage = Usage(
            input_tokens=(u.input_tokens or 0) + (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0),
            output_tokens=u.output_tokens or 0,
            latency_s=time.perf_counter() - start,
        )
        log.debug("%s %s: %d in, %d out tokens, %.2fs", self.version.id, self.version.model,
                  usage.input_tokens, usage.output_tokens, usage.latency_s)
        where = self.where()
        text = "".join(b.text for b in msg.content if b.type == "text")
        if msg.stop_reason == "refusal":
            raise RefusalError(f"the {where} refused to answer: {' '.join(text.split())[:200]}", usage=usage)
        if msg.stop_reason in ("max_tokens", "model_context_window_exceeded"):
            raise TruncatedError(
                f"the {where} stopped at the token limit before finishing the JSON answer "
                f"({usage.output_tokens} output tokens); raise params.max_tokens", usage=usage)
        if mode == TOOL:
            calls = [b for b in msg.content if b.type == "tool_use"]
            if not calls or not isinstance(calls[0].input, dict):
                raise OutputError(f"the {where} did not call the answer tool", usage=usage)
            data = calls[0].input
            return Completion(data=data, usage=usage, raw=json.dumps(data, ensure_ascii=False))
        return Completion(data=parse_json_object(text, usage, where), usage=usage, raw=text)


def retry_after_seconds(headers) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``retry-after`` (a number), else None.

    >>> retry_after_seconds({"retry-after": "600"}), retry_after_seconds({"retry-after-ms": "250"})
    (600.0, 0.25)
    """
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return float(raw) / scale
            except ValueError:
                return None
    return None


def cap_retry_after(request, call_next):
    """SDK middleware: mark a response not retryable when it asks to wait over MAX_RETRY_AFTER_S."""
    response = call_next(request)
    wait = retry_after_seconds(response.headers) if response.status_code >= 400 else None
    if wait is not None and wait > MAX_RETRY_AFTER_S:
        response.http_response.headers["x-should-retry"] = "false"
    return response


def tool_name(schema_name: str) -> str:
    """A tool name the API accepts (``^[a-zA-Z0-9_-]{1,64}$``): ``tool_name("my labels!") == "my_labels_"``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", schema_name)[:64] or "labels"


