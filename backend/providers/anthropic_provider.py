"""Anthropic Messages with structured output (official ``anthropic`` SDK).

Request: ``messages.create(model, system, messages=[user], max_tokens,
output_config={"format": {"type": "json_schema", "schema": ...}})``.  Models or
gateways that reject ``output_config`` with a 400 are asked again with a forced tool
(``tools=[{"name", "input_schema"}]``, ``tool_choice={"type": "tool", "name": ...}``),
and that choice is remembered per (base URL, model) in the
:class:`~backend.providers.pool.ProviderPool`.

Images go as ``image`` blocks with a ``url`` source, or ``base64`` for inline bytes.
Options (a version's ``params:``, see :class:`AnthropicOptions`): max_tokens (required by the
API; default 1024), stop (sent as ``stop_sequences``), timeout, max_retries.  There is no
``temperature``, ``top_p`` or ``seed``: the API version that anthropic SDK 2.x speaks
(``anthropic-version: 2026-10-21``) rejects sampling parameters with a 400 and has no seed, so a
version that sets them is refused when the versions file loads.  The key is ``ANTHROPIC_API_KEY``;
the endpoint the version's ``base_url``, else ``ANTHROPIC_BASE_URL``, else https://api.anthropic.com.

Retries (429/5xx/timeouts, ``Retry-After``) are :meth:`Provider.complete`'s, as for every provider
(:mod:`backend.providers.retry`); the SDK client makes none.

Input tokens include cache writes and reads (``cache_creation_input_tokens`` and
``cache_read_input_tokens``), as the API's usage docs define the total.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import anthropic

from backend.providers.base import (
    Completion,
    ImagePart,
    Part,
    Provider,
    TextPart,
    Usage,
    parse_json_object,
    server_message,
)
from backend.providers.options import ProviderOptions, integer, option, strings
from core.errors import OutputError, RefusalError, TruncatedError

DEFAULT_MAX_TOKENS = 1024
OUTPUT_CONFIG, TOOL = "output_config", "tool"
# a 400 that says the structured-output request itself is not supported
_REJECTS_FORMAT = re.compile(r"output_config|output.format|structured.output|json_schema", re.I)


@dataclass(frozen=True)
class AnthropicOptions(ProviderOptions):
    """What an anthropic version's ``params:`` may hold (no sampling parameters: the API rejects them)."""

    max_tokens: int = option("most tokens the answer may use", integer(lo=1), DEFAULT_MAX_TOKENS)
    stop: str | list[str] | None = option("stop sequence(s): the answer ends before any of them", strings())


def user_blocks(parts: list[Part]) -> list[dict]:
    """The user message's content blocks: ``text``, and ``image`` with a url or base64 source."""
    content: list[dict] = []
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
    return content


class AnthropicProvider(Provider):
    name = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    default_base_url = "https://api.anthropic.com"
    sdk: ClassVar[Any] = anthropic
    sdk_exception = anthropic.AnthropicError
    Options = AnthropicOptions
    modes: ClassVar[tuple[str, ...]] = (OUTPUT_CONFIG, TOOL)
    options: AnthropicOptions

    def api_key(self) -> str | None:
        return self.settings.anthropic_api_key

    def configured_base_url(self) -> str | None:
        return self.settings.anthropic_base_url

    def new_client(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0)

    def format_key(self) -> tuple:
        return (self.name, self.base_url, self.version.model)

    def next_mode(self, mode: str, exc: Exception) -> str | None:
        return TOOL if mode == OUTPUT_CONFIG and _REJECTS_FORMAT.search(server_message(exc)) else None

    def request(self, *, system: str, parts: list[Part], schema: dict, schema_name: str, mode: str) -> dict:
        """The keyword arguments for ``messages.create``."""
        kwargs: dict = {
            "model": self.version.model,
            "system": system,
            "messages": [{"role": "user", "content": user_blocks(parts)}],
            "max_tokens": self.options.max_tokens,
        }
        stop = self.options.stop
        if stop:
            kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
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

    def send(self, client: anthropic.Anthropic, kwargs: dict) -> Any:
        return client.messages.create(**kwargs)

    def read_usage(self, response: Any) -> tuple[int, int]:
        u = response.usage
        cached = (u.cache_creation_input_tokens or 0) + (u.cache_read_input_tokens or 0)
        return (u.input_tokens or 0) + cached, u.output_tokens or 0

    def read_answer(self, response: Any, usage: Usage, mode: str) -> Completion:
        where = self.where()
        text = "".join(b.text for b in response.content if b.type == "text")
        if response.stop_reason == "refusal":
            raise RefusalError(f"the {where} refused to answer: {' '.join(text.split())[:200]}", usage=usage)
        if response.stop_reason in ("max_tokens", "model_context_window_exceeded"):
            raise TruncatedError(
                f"the {where} stopped at the token limit before finishing the JSON answer "
                f"({usage.output_tokens} output tokens); raise params.max_tokens", usage=usage)
        if mode == TOOL:
            calls = [b for b in response.content if b.type == "tool_use"]
            if not calls or not isinstance(calls[0].input, dict):
                raise OutputError(f"the {where} did not call the answer tool", usage=usage)
            data = calls[0].input
            return Completion(data=data, usage=usage, raw=json.dumps(data, ensure_ascii=False))
        return Completion(data=parse_json_object(text, usage, where), usage=usage, raw=text)


def tool_name(schema_name: str) -> str:
    """A tool name the API accepts (``^[a-zA-Z0-9_-]{1,64}$``): ``tool_name("my labels!") == "my_labels_"``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", schema_name)[:64] or "labels"


