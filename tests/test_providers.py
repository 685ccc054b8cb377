"""Providers over real HTTP: the official openai/anthropic SDKs against the stand-in LLM server."""
from __future__ import annotations

import logging
import socket
from types import MappingProxyType

import pytest

from backend.providers import PROVIDERS, ImagePart, ProviderPool, TextPart, make_provider
from backend.versions import PromptVersion
from core.errors import (
    AuthError,
    ConfigError,
    OutputError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RefusalError,
    TruncatedError,
    VersionError,
)
from core.settings import Settings
from fakellm import count_tokens

OPENAI_KEY = "fake-openai-key-for-tests"
ANTHROPIC_KEY = "fake-anthropic-key-for-tests"

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "spans": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": ["PER", "ORG"]}},
                "required": ["text", "label"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["sentiment", "spans"],
    "additionalProperties": False,
}
EXPECTED = {"sentiment": "positive", "spans": [{"text": "Battery", "label": "PER"}]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def version(provider: str = "openai", model: str | None = None, base_url: str | None = None, **params):
    model = model or {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}.get(provider, "llama3.1:8b")
    return PromptVersion(id=f"{provider}-v1", provider=provider, model=model, instruction="{text}",
                         params=MappingProxyType(params), base_url=base_url)


def settings(fake, **kw) -> Settings:
    base = dict(openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY,
                openai_base_url=fake.openai_base_url, anthropic_base_url=fake.anthropic_base_url,
                provider_timeout=10.0, provider_max_retries=0)
    base.update(kw)
    return Settings(**base)


def ask(provider, text: str = "Review: <text>Battery lasts two days</text>", parts=None):
    return provider.complete(system="Label the review.", parts=parts or [TextPart(text)], schema=SCHEMA)


ALL = ["openai", "anthropic", "openai-compatible"]


# --- happy paths ---------------------------------------------------------------------------

def test_registry_names_the_three_providers():
    assert set(PROVIDERS) == {"openai", "anthropic", "openai-compatible"}


def test_openai_strict_schema_with_image_url(fake_llm):
    p = make_provider(version("openai", temperature=0, max_tokens=300, seed=7), settings(fake_llm))
    done = ask(p, parts=[TextPart("Review: <text>Battery lasts two days</text>"),
                         ImagePart(url="https://example.com/phone.png")])
    assert done.data == EXPECTED
    req = fake_llm.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["status"] == 200
    body = req["body"]
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "labels", "strict": True, "schema": SCHEMA}}
    assert body["messages"][0] == {"role": "system", "content": "Label the review."}
    assert body["messages"][1]["content"][1] == {"type": "image_url",
                                                 "image_url": {"url": "https://example.com/phone.png"}}
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    assert body["temperature"] == 0 and body["seed"] == 7
    # token counts come from the server's usage block (ceil(chars/4) + 85 per image)
    assert done.usage.input_tokens == count_tokens("Label the review.") + count_tokens(
        "Review: <text>Battery lasts two days</text>") + 85
    assert done.usage.output_tokens == count_tokens(done.raw)
    assert done.usage.latency_s > 0


def test_openai_inline_image_bytes_become_a_data_url(fake_llm):
    p = make_provider(version("openai"), settings(fake_llm))
    ask(p, parts=[TextPart("<text>Battery</text>"), ImagePart(data=PNG)])
    url = fake_llm.requests[-1]["body"]["messages"][1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")


def test_anthropic_output_config_with_images(fake_llm):
    p = make_provider(version("anthropic", stop="###"), settings(fake_llm))
    done = ask(p, parts=[TextPart("Review: <text>Battery lasts two days</text>"),
                         ImagePart(url="https://example.com/a.jpg"), ImagePart(data=PNG)])
    assert done.data == EXPECTED
    body = fake_llm.requests[-1]["body"]
    assert fake_llm.requests[-1]["path"] == "/v1/messages"
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert body["max_tokens"] == 1024 and body["stop_sequences"] == ["###"]
    assert "temperature" not in body
    assert body["system"] == "Label the review."
    blocks = body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    assert blocks[2]["source"]["type"] == "base64" and blocks[2]["source"]["media_type"] == "image/png"
    assert done.usage.input_tokens > 2 * 85 and done.usage.output_tokens == count_tokens(done.raw)


def test_anthropic_falls_back_to_a_forced_tool_and_remembers_per_pool(fake_llm):
    fake_llm.options.output_config = False
    pool, s = ProviderPool(), settings(fake_llm)
    v = version("anthropic", model="claude-3-5-haiku-20241022")
    assert ask(pool.provider(v, s)).data == EXPECTED
    assert [r["status"] for r in fake_llm.requests] == [400, 200]
    body = fake_llm.requests[-1]["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "labels"}
    assert body["tools"][0]["input_schema"] == SCHEMA and "output_config" not in body
    assert ask(pool.provider(v, s)).data == EXPECTED  # a new provider, same pool: straight to the tool
    assert [r["status"] for r in fake_llm.requests] == [400, 200, 200]
    # remembered per (base URL, model): another model on the same server still tries output_config first
    ask(pool.provider(version("anthropic", model="claude-haiku-4-5"), s))
    assert [r["status"] for r in fake_llm.requests] == [400, 200, 200, 400, 200]


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_400_not_about_the_format_is_not_retried(fake_llm, name):
    pool = ProviderPool()
    p = pool.provider(version(name), settings(fake_llm))
    with pytest.raises(ProviderError, match="HTTP 400: injected fault 400"):
        ask(p, "<text>Battery</text> [[fault:400:always]]")
    assert [r["status"] for r in fake_llm.requests] == [400]
    assert pool.accepted_format(p.format_key() or ()) is None


def test_compatible_uses_version_base_url_and_placeholder_key(fake_llm):
    s = settings(fake_llm, openai_api_key=None, openai_base_url=None)
    p = make_provider(version("openai-compatible", base_url=fake_llm.openai_base_url, max_tokens=200), s)
    assert ask(p).data == EXPECTED
    body = fake_llm.requests[-1]["body"]
    assert body["max_tokens"] == 200 and "max_completion_tokens" not in body
    assert body["response_format"]["type"] == "json_schema"


def test_compatible_falls_back_to_json_object_and_remembers_per_base_url(fake_llm):
    fake_llm.options.json_schema = False
    pool = ProviderPool()
    p = make_provider(version("openai-compatible"), settings(fake_llm), pool)
    assert ask(p).data == EXPECTED
    assert [r["status"] for r in fake_llm.requests] == [400, 200]
    body = fake_llm.requests[-1]["body"]
    assert body["response_format"] == {"type": "json_object"}
    assert '"sentiment"' in body["messages"][0]["content"]  # the schema went into the system prompt
    assert pool.accepted_format(("openai-compatible", fake_llm.openai_base_url)) == "json_object"
    ask(pool.provider(version("openai-compatible", model="qwen2.5"), settings(fake_llm)))  # same server
    assert [r["status"] for r in fake_llm.requests] == [400, 200, 200]


def test_compatible_steps_down_to_the_prompt_only_and_pools_do_not_share(fake_llm):
    fake_llm.options.json_schema = fake_llm.options.json_object = False
    first, second, s = ProviderPool(), ProviderPool(), settings(fake_llm)
    assert ask(first.provider(version("openai-compatible"), s)).data == EXPECTED
    assert [r["status"] for r in fake_llm.requests] == [400, 400, 200]
    body = fake_llm.requests[-1]["body"]
    assert "response_format" not in body and '"sentiment"' in body["messages"][0]["content"]
    ask(first.provider(version("openai-compatible"), s))
    assert [r["status"] for r in fake_llm.requests] == [400, 400, 200, 200]  # remembered in `first`
    ask(second.provider(version("openai-compatible"), s))  # `second` knows nothing of it
    assert [r["status"] for r in fake_llm.requests] == [400, 400, 200, 200, 400, 400, 200]


def test_compatible_server_rejecting_every_format_is_a_provider_error(fake_llm):
    pool = ProviderPool()
    with pytest.raises(ProviderError, match="HTTP 400"):
        ask(pool.provider(version("openai-compatible"), settings(fake_llm)),
            "<text>Battery</text> [[fault:400:always]]")
    assert [r["status"] for r in fake_llm.requests] == [400, 400, 400]  # json_schema, json_object, prompt
    assert pool.accepted_format(("openai-compatible", fake_llm.openai_base_url)) is None


def test_compatible_without_base_url_is_a_config_error(fake_llm):
    with pytest.raises(ConfigError, match="base_url"):
        make_provider(version("openai-compatible"), settings(fake_llm, openai_base_url=None))


def test_unknown_provider_is_a_config_error(fake_llm):
    v = PromptVersion(id="x", provider="cohere", model="m", instruction="{text}")
    with pytest.raises(ConfigError, match="unknown provider"):
        make_provider(v, settings(fake_llm))


def test_clients_are_shared_per_base_url_within_a_pool(fake_llm):
    s, pool = settings(fake_llm), ProviderPool()
    p = pool.provider(version("openai", model="gpt-4o"), s)
    a = p.client()
    assert p.client() is a  # made once per provider, not per call
    b = pool.provider(version("openai", model="gpt-4o-mini", timeout=3), s).client()
    assert a._client is b._client  # one connection pool
    assert (a.timeout, b.timeout) == (10.0, 3)  # each with its version's timeout
    c = pool.provider(version("openai"), s.replace(openai_api_key="another-key")).client()
    assert c._client is not a._client
    d = ProviderPool().provider(version("openai", model="gpt-4o"), s).client()
    assert d._client is not a._client  # two pools share nothing


# --- options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, fragment", [
    ("anthropic", {"temperature": 0}, "version 'anthropic-v1' (anthropic) has option 'temperature', which "
                                      "anthropic does not take; it takes: max_tokens, stop, timeout, max_retries"),
    ("anthropic", {"seed": 1}, "option 'seed', which anthropic does not take"),
    ("openai", {"temprature": 0}, "which openai does not take (did you mean 'temperature'?); it takes: temperature"),
    ("openai", {"temperature": "low"}, "(openai) has temperature: 'low'; it must be a number from 0 to 2"),
    ("openai", {"temperature": 3}, "it must be a number from 0 to 2"),
    ("openai-compatible", {"max_tokens": 0}, "max_tokens: 0; it must be an integer >= 1"),
    ("openai", {"seed": 1.5}, "seed: 1.5; it must be an integer"),
    ("anthropic", {"max_tokens": True}, "max_tokens: True; it must be an integer >= 1"),
    ("anthropic", {"stop": [1]}, "stop: [1]; it must be a string or a list of strings"),
    ("openai", {"timeout": 0}, "timeout: 0; it must be a number > 0"),
    ("openai", {"max_retries": -1}, "max_retries: -1; it must be an integer >= 0"),
])
def test_options_a_provider_does_not_take_are_refused(fake_llm, name, params, fragment):
    with pytest.raises(VersionError) as err:
        make_provider(version(name, base_url=fake_llm.openai_base_url if name != "anthropic" else None, **params),
                      settings(fake_llm))
    assert fragment in str(err.value)
    assert fake_llm.requests == []


def test_options_are_typed_with_defaults(fake_llm):
    p = make_provider(version("anthropic", stop=["a", "b"], timeout=2.5), settings(fake_llm))
    assert (p.options.max_tokens, p.options.stop, p.timeout, p.max_retries) == (1024, ["a", "b"], 2.5, 0)
    assert "temperature" in PROVIDERS["openai"].Options.describe()
    assert set(PROVIDERS["anthropic"].Options.describe()) == {"max_tokens", "stop", "timeout", "max_retries"}


# --- faults ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_malformed_json_is_an_output_error_with_usage(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm))
    with pytest.raises(OutputError, match="not valid JSON") as err:
        ask(p, "<text>Battery</text> [[fault:malformed]]")
    assert type(err.value) is OutputError
    assert err.value.usage.output_tokens > 0 and err.value.usage.input_tokens > 0


@pytest.mark.parametrize("name", ALL)
def test_truncated_answer_records_usage(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm))
    with pytest.raises(TruncatedError, match="max_tokens") as err:
        ask(p, "<text>Battery</text> [[fault:truncated]]")
    assert err.value.reason == "truncated"
    assert err.value.usage.output_tokens > 0 and err.value.usage.input_tokens > 0


@pytest.mark.parametrize("name", ALL)
def test_small_max_tokens_truncates_naturally(fake_llm, name):
    p = make_provider(version(name, max_tokens=3), settings(fake_llm))
    with pytest.raises(TruncatedError) as err:
        ask(p)
    assert err.value.usage.output_tokens == 3


@pytest.mark.parametrize("name", ALL)
def test_refusal(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm))
    with pytest.raises(RefusalError, match="refused") as err:
        ask(p, "<text>Battery</text> [[fault:refusal]]")
    assert err.value.reason == "refusal" and err.value.usage.output_tokens > 0


@pytest.mark.parametrize("name", ["openai", "openai-compatible"])
def test_a_bare_compatible_reply_is_read(fake_llm, name):
    """A server that sends no ``usage`` and no ``refusal``/``logprobs`` keys (some local ones):
    the answer is read, its tokens count as 0."""
    p = make_provider(version(name), settings(fake_llm))
    done = ask(p, "Review: <text>Battery lasts two days</text> [[fault:bare]]")
    assert done.data == EXPECTED and (done.usage.input_tokens, done.usage.output_tokens) == (0, 0)
    assert done.logprobs is None


@pytest.mark.parametrize("name", ["openai", "openai-compatible"])
def test_a_reply_without_choices_is_a_provider_error(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm))
    with pytest.raises(ProviderError, match="returned no choices") as err:
        ask(p, "<text>Battery</text> [[fault:nochoices]]")
    assert err.value.usage.input_tokens > 0   # the tokens the server counted are kept


@pytest.mark.parametrize("name", ALL)
def test_server_error_names_base_url_and_model(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm, provider_max_retries=1))
    with pytest.raises(ProviderError) as err:
        ask(p, "<text>Battery</text> [[fault:500:always]]")
    assert type(err.value) is ProviderError
    msg = str(err.value)
    assert "HTTP 500" in msg and p.base_url in msg and p.version.model in msg
    assert len(fake_llm.requests) == 2  # the SDK retried once


@pytest.mark.parametrize("name", ALL)
def test_timeout(fake_llm, name):
    fake_llm.options.timeout_s = 5
    p = make_provider(version(name, timeout=0.3), settings(fake_llm))
    with pytest.raises(ProviderTimeout, match="within 0.3s") as err:
        ask(p, "<text>Battery</text> [[fault:timeout]]")
    assert err.value.reason == "timeout" and err.value.usage.latency_s > 0


@pytest.mark.parametrize("name", ALL)
def test_429_recovered_by_sdk_retry(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm, provider_max_retries=2))
    assert ask(p, "<text>Battery</text> [[fault:429]]").data == EXPECTED
    statuses = [r["status"] for r in fake_llm.requests]
    assert statuses == [429, 200]
    assert fake_llm.requests[1]["headers"]["x-stainless-retry-count"] == "1"


@pytest.mark.parametrize("name", ALL)
def test_429_exhausted_is_rate_limit_error(fake_llm, name):
    p = make_provider(version(name), settings(fake_llm, provider_max_retries=1))
    with pytest.raises(RateLimitError, match="429") as err:
        ask(p, "<text>Battery</text> [[fault:429:always]]")
    assert err.value.reason == "rate_limited"
    assert len(fake_llm.requests) == 2


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_retry_after_beyond_the_sdk_limit_is_not_retried(fake_llm, name):
    # The SDKs honour Retry-After: a server asking for 10 minutes is not hammered.
    fake_llm.options.retry_after = 600
    p = make_provider(version(name), settings(fake_llm, provider_max_retries=2))
    with pytest.raises(RateLimitError):
        ask(p, "<text>Battery</text> [[fault:429]]")
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("name", ALL)
def test_answer_that_is_not_an_object(fake_llm, name):
    fake_llm.set_answers(lambda info: ["positive"])
    p = make_provider(version(name), settings(fake_llm))
    with pytest.raises(OutputError, match="expected an object"):
        ask(p)


@pytest.mark.parametrize("name", ALL)
def test_connection_refused_names_base_url_and_model(name):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    s = Settings(openai_api_key=OPENAI_KEY, anthropic_api_key=ANTHROPIC_KEY, openai_base_url=url + "/v1",
                 anthropic_base_url=url, provider_max_retries=0, provider_timeout=5)
    p = make_provider(version(name), s)
    with pytest.raises(ProviderError, match="could not connect") as err:
        ask(p)
    assert f"127.0.0.1:{port}" in str(err.value) and p.version.model in str(err.value)


# --- keys --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                      ("openai-compatible", "OPENAI_API_KEY")])
def test_rejected_key_names_env_var_and_never_leaks(fake_llm, caplog, name, env):
    fake_llm.options.api_keys = frozenset({"the-right-key"})
    caplog.set_level(logging.DEBUG)
    p = make_provider(version(name), settings(fake_llm, provider_max_retries=2))
    with pytest.raises(AuthError) as err:
        ask(p)
    msg = str(err.value)
    assert env in msg and "401" in msg and err.value.reason == "auth"
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        assert key not in msg and key not in caplog.text and key not in repr(err.value.__dict__)
        assert key[-8:] not in msg  # not even the tail the server echoes back
    assert len(fake_llm.requests) == 1  # 401 is not retried


@pytest.mark.parametrize("name,env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_missing_key_names_env_var_without_calling(fake_llm, name, env):
    p = make_provider(version(name), settings(fake_llm, openai_api_key=None, anthropic_api_key=None))
    with pytest.raises(AuthError, match=f"{env} is not set"):
        ask(p)
    assert fake_llm.requests == []


def test_server_error_text_is_redacted(fake_llm):
    # A server that echoes the key in an error body: the message keeps the detail, masks the key.
    def echo(info):
        raise RuntimeError(f"bad key {OPENAI_KEY}")
    fake_llm.set_answers(echo)
    p = make_provider(version("openai"), settings(fake_llm))
    with pytest.raises(ProviderError) as err:
        ask(p)
    assert "bad key ***" in str(err.value) and OPENAI_KEY not in str(err.value)
