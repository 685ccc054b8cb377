"""OpenAI Chat Completions with strict structured outputs (official ``openai`` SDK).

Request: ``chat.completions.create(model, messages=[system, user], response_format=
{"type": "json_schema", "json_schema": {"name", "strict": True, "schema"}})``; images go
as ``image_url`` parts (the URL, or a ``data:`` URL for inline bytes).  Options (a version's
``params:``, see :class:`OpenAIOptions`): temperature, top_p, seed, stop, max_tokens (sent as
``max_completion_tokens``), timeout, max_retries (retries of :mod:`backend.providers.retry`, which
honour ``Retry-After``).
A version with ``confidence: logprobs`` also sends ``logprobs: true`` and gets the answer's token
log-probabilities back in ``Completion.logprobs`` (``choices[0].logprobs.content[*].{token, logprob}``).

The key is ``OPENAI_API_KEY`` (``settings.openai_api_key``); the endpoint is the version's
``base_url``, else ``OPENAI_BASE_URL``, else https://api.openai.com/v1.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import openai

from backend.providers.base import Completion, ImagePart, Part, Provider, TextPart, Usage, parse_json_object
from backend.providers.options import ProviderOptions, integer, number, option, strings
from core.errors import ProviderError, RefusalError, TruncatedError

# How the answer format is requested, best first (openai-compatible servers may step down).
JSON_SCHEMA, JSON_OBJECT, PROMPT_ONLY = "json_schema", "json_object", "prompt"


@dataclass(frozen=True)
class OpenAIOptions(ProviderOptions):
    """What an openai (or openai-compatible) version's ``params:`` may hold."""

    temperature: float | None = option("sampling temperature: 0 is most repeatable", number(0, 2))
    top_p: float | None = option("nucleus sampling: keep the tokens within this probability mass", number(0, 1))
    seed: int | None = option("best-effort deterministic sampling", integer())
    stop: str | list[str] | None = option("stop sequence(s): the answer ends before any of them", strings())
    max_tokens: int | None = option("most tokens the answer may use", integer(lo=1))


def schema_in_prompt(system: str, schema: dict) -> str:
    """``system`` plus an instruction to answer with JSON matching ``schema`` (for servers without json_schema)."""
    return (
        f"{system}\n\nAnswer with one JSON object only (no prose, no code fences) that conforms to this "
        f"JSON schema:\n```json\n{json.dumps(schema, ensure_ascii=False)}\n```"
    )


def user_content(parts: list[Part]) -> object:
    """The user message content: plain text when there are no images, else text and ``image_url`` parts."""
    if all(isinstance(p, TextPart) for p in parts):
        return "\n\n".join(p.text for p in parts if isinstance(p, TextPart))
    content: list[dict] = []
    for p in parts:
        if isinstance(p, TextPart):
            content.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            content.append({"type": "image_url", "image_url": {"url": p.data_url()}})
        else:
            raise TypeError(f"unsupported part {type(p).__name__}")
    return content


class OpenAIProvider(Provider):
    name = "openai"
    key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"
    max_tokens_param = "max_completion_tokens"  # the official API's name; `max_tokens` is deprecated there
    sdk: ClassVar[Any] = openai
    sdk_exception = openai.OpenAIError
    Options = OpenAIOptions
    modes: ClassVar[tuple[str, ...]] = (JSON_SCHEMA,)
    options: OpenAIOptions
    logprobs: ClassVar[bool] = True  # can return token log-probabilities (backend.confidence)

    def configured_base_url(self) -> str | None:
        return self.settings.openai_base_url

    def new_client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0)

    def api_key(self) -> str | None:
        return self.settings.openai_api_key

    def request(self, *, system: str, parts: list[Part], schema: dict, schema_name: str, mode: str) -> dict:
        """The keyword arguments for ``chat.completions.create``."""
        if mode != JSON_SCHEMA:
            system = schema_in_prompt(system, schema)
        kwargs: dict = {
            "model": self.version.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user_content(parts)}],
        }
        if mode == JSON_SCHEMA:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            }
        elif mode == JSON_OBJECT:
            kwargs["response_format"] = {"type": "json_object"}
        o = self.options
        for name, value in (("temperature", o.temperature), ("top_p", o.top_p), ("seed", o.seed), ("stop", o.stop)):
            if value is not None:
                kwargs[name] = value
        if o.max_tokens is not None:
            kwargs[self.max_tokens_param] = o.max_tokens
        if getattr(getattr(self.version, "confidence", None), "method", None) == "logprobs":
            kwargs["logprobs"] = True
        return kwargs

    def send(self, client: openai.OpenAI, kwargs: dict) -> Any:
        """``POST /chat/completions`` through the SDK client (its auth, timeouts, retries off, error
        types), with ``kwargs`` sent as they are, and the reply's JSON body returned as it is
        (``cast_to=object``): both are plain JSON, and the SDK's typed walks over them
        (``chat.completions.create``'s parameters; building a ``ChatCompletion``) were over a third
        of the backend's CPU per task (measured: ``bench/bench_predict.py``)."""
        body = dict(kwargs)
        headers = body.pop("extra_headers", None)   # what create() would take as extra_headers
        return client.post("/chat/completions", body=body, cast_to=object,
                           options={"headers": headers} if headers else {})

    def read_usage(self, response: Any) -> tuple[int, int]:
        u = member(response, "usage")
        return (int(member(u, "prompt_tokens") or 0), int(member(u, "completion_tokens") or 0))

    def read_answer(self, response: Any, usage: Usage, mode: str) -> Completion:
        where = self.where()
        choices = member(response, "choices")
        if not choices or not isinstance(choices, list):
            raise ProviderError(f"the {where} returned no choices", usage=usage)
        choice = choices[0]
        message = member(choice, "message")
        finish = member(choice, "finish_reason")
        if member(message, "refusal") or finish == "content_filter":
            reason = " ".join(str(member(message, "refusal") or "content filter").split())[:200]
            raise RefusalError(f"the {where} refused to answer: {reason}", usage=usage)
        if finish == "length":
            raise TruncatedError(
                f"the {where} stopped at the token limit before finishing the JSON answer "
                f"({usage.output_tokens} output tokens); raise params.max_tokens", usage=usage)
        content = member(message, "content")
        content = content if isinstance(content, str) else None
        data = parse_json_object(content, usage, where)
        return Completion(data=data, usage=usage, raw=content or "", logprobs=read_logprobs(choice))


def member(obj: Any, name: str) -> Any:
    """``obj[name]`` of a JSON object in the reply; None when ``obj`` is not an object or lacks it
    (an OpenAI-compatible server may leave fields out)."""
    return obj.get(name) if isinstance(obj, dict) else None


def read_logprobs(choice: Any) -> list[tuple[str, float]] | None:
    """The (token, logprob) pairs of ``choice.logprobs.content``, or None when the server sent none."""
    content = member(member(choice, "logprobs"), "content")
    if not content or not isinstance(content, list):
        return None
    return [(str(member(t, "token")), float(member(t, "logprob") or 0.0)) for t in content]
