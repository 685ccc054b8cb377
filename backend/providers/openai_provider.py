"""OpenAI Chat Completions with strict structured outputs (official ``openai`` SDK).

Request: ``chat.completions.create(model, messages=[system, user], response_format=
{"type": "json_schema", "json_schema": {"name", "strict": True, "schema"}})``; images go
as ``image_url`` parts (the URL, or a ``data:`` URL for inline bytes).  Version params:
temperature, top_p, seed, stop, max_tokens (sent as ``max_completion_tokens``), timeout,
max_retries (the SDK's own retries, which honour ``Retry-After``).

The key is ``OPENAI_API_KEY`` (``settings.openai_api_key``); the endpoint is the version's
``base_url``, else ``OPENAI_BASE_URL``, else https://api.openai.com/v1.
"""
from __future__ import annotations

import json
import logging
import time

import openai

from core.errors import ProviderError, RefusalError, TruncatedError
from backend.providers.base import Completion, ImagePart, Provider, TextPart, Usage, parse_json_object

log = logging.getLogger(__name__)

# How the answer format is requested, best first (openai-compatible servers may step down).
JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY = "json_schema", "json_object", "prompt"


def schema_in_prompt(system: str, schema: dict) -> str:
    """``system`` plus an instruction to answer with JSON matching ``schema`` (for servers without json_schema)."""
    return (
        f"{system}\n\nAnswer with one JSON object only (no prose, no code fences) that conforms to this "
        f"JSON schema:\n```json\n{json.dumps(schema, ensure_ascii=False)}\n```"
    )


class OpenAIProvider(Provider):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"
    max_tokens_param = "max_completion_tokens"  # the official API's name; `max_tokens` is deprecated there
    sdk = openai

    def configured_base_url(self) -> str | None:
        return self.settings.openai_base_url

    def new_client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0)

    # --- hooks the openai-compatible provider overrides -----------------------
    def api_key(self) -> str | None:
        return self.settings.openai_api_key

    def format_mode(self) -> str:
        return JSON_SCHEMA

    def on_format_rejected(self, mode: str, exc: openai.BadRequestError) -> str | None:
        """The mode to retry with when the server rejects ``mode`` with a 400; None = give up."""
        return None

    # --- the call -----------------------------------------------------------
    def request(self, *, system: str, parts, schema: dict, schema_name: str, mode: str) -> dict:
        """The keyword arguments for ``chat.completions.create``."""
        if all(isinstance(p, TextPart) for p in parts):
            content: object = "\n\n".join(p.text for p in parts)
        else:
            content = []
            for p in parts:
                if isinstance(p, TextPart):
                    content.append({"type": "text", "text": p.text})
                elif isinstance(p, ImagePart):
                    content.append({"type": "image_url", "image_url": {"url": p.data_url()}})
                else:
                    raise TypeError(f"unsupported part {type(p).__name__}")
        if mode != JSON_SCHEMA:
            system = schema_in_prompt(system, schema)
        kwargs: dict = {
            "model": self.version.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
        }
        if mode == JSON_SCHEMA:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            }
        elif mode == JSON_OBJECT:
            kwargs["response_format"] = {"type": "json_object"}
        p = self.version.params
        for name in ("temperature", "top_p", "seed", "stop"):
            if p.get(name) is not None:
                kwargs[name] = p[name]
        if p.get("max_tokens") is not None:
            kwargs[self.max_tokens_param] = int(p["max_tokens"])
        return kwargs

    def complete(self, *, system, parts, schema, schema_name="labels") -> Completion:
        """One structured call; see the module docstring.  Raises core.errors on failure."""
        client = self.client()
        mode = self.format_mode()
        start = time.perf_counter()
        while True:
            try:
                resp = client.chat.completions.create(
                    **self.request(system=system, parts=parts, schema=schema, schema_name=schema_name, mode=mode)
                )
                break
            except openai.BadRequestError as exc:
                fallback = self.on_format_rejected(mode, exc)
                if fallback is None:
                    raise self.sdk_error(exc, start) from None
                log.info("%s rejected response format %s; retrying with %s", self.base_url, mode, fallback)
                mode = fallback
            except openai.OpenAIError as exc:
                raise self.sdk_error(exc, start) from None
        usage = Usage(
            input_tokens=(resp.usage.prompt_tokens or 0) if resp.usage else 0,
            output_tokens=(resp.usage.completion_tokens or 0) if resp.usage else 0,
            latency_s=time.perf_counter() - start,
        )
        self.remember_mode(mode)
        log.debug("%s %s: %d in, %d out tokens, %.2fs", self.version.id, self.version.model,
                  usage.input_tokens, usage.output_tokens, usage.latency_s)
        where = self.where()
        if not resp.choices:
            raise ProviderError(f"the {where} returned no choices", usage=usage)
        choice = resp.choices[0]
        message = choice.message
        if getattr(message, "refusal", None) or choice.finish_reason == "content_filter":
            reason = " ".join((message.refusal or "content filter").split())[:200]
            raise RefusalError(f"the {where} refused to answer: {reason}", usage=usage)
        if choice.finish_reason == "length":
            raise TruncatedError(
                f"the {where} stopped at the token limit before finishing the JSON answer "
                f"({usage.output_tokens} output tokens); raise params.max_tokens", usage=usage)
        data = parse_json_object(message.content, usage, where)
        return Completion(data=data, usage=usage, raw=message.content or "")

    def remember_mode(self, mode: str) -> None:
        """Hook: the openai-compatible provider remembers which format a server accepted."""


