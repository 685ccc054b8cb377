"""The stand-in LLM server itself: wire formats, answer sources, faults, CLI."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from fakellm import (
    FakeLLM,
    RequestInfo,
    SchemaAnswer,
    TableAnswer,
    count_tokens,
    load_answer_source,
    quote_from,
    worsen,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["pos", "neg"]}},
          "required": ["label"], "additionalProperties": False}


def post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    """POST JSON with urllib; returns (status, headers, json body) for success and HTTP errors alike."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def chat_body(user: str, schema: dict | None = SCHEMA, **extra) -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "sys"},
                                                 {"role": "user", "content": user}], **extra}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "strict": True,
                                                                          "schema": schema}}
    return body


def info(user: str, schema: dict | None, model: str = "m") -> RequestInfo:
    return RequestInfo(api="openai", model=model, system="", user=user, schema=schema)


AUTH = {"Authorization": "Bearer test-key"}


# --- wire format -------------------------------------------------------------------------------

def test_openai_wire_format(fake_llm):
    status, headers, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("<t>Hello</t>"), AUTH)
    assert status == 200 and headers["x-request-id"].startswith("req_")
    choice = body["choices"][0]
    assert body["object"] == "chat.completion" and choice["finish_reason"] == "stop"
    assert json.loads(choice["message"]["content"]) == {"label": "pos"} and choice["message"]["refusal"] is None
    assert body["usage"] == {"prompt_tokens": count_tokens("sys") + count_tokens("<t>Hello</t>"),
                             "completion_tokens": count_tokens('{"label": "pos"}'),
                             "total_tokens": body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"],
                             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
    # the un-versioned path works too
    assert post(fake_llm.url + "/chat/completions", chat_body("x"), AUTH)[0] == 200


def test_anthropic_wire_format(fake_llm):
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "system": "sys",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "<t>Hello</t>"}]}],
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}
    status, headers, msg = post(fake_llm.url + "/v1/messages", body, {"x-api-key": "k"})
    assert status == 200 and headers["request-id"].startswith("req_")
    assert msg["type"] == "message" and msg["stop_reason"] == "end_turn"
    assert msg["content"] == [{"type": "text", "text": '{"label": "pos"}'}]
    assert msg["usage"]["input_tokens"] == count_tokens("sys") + count_tokens("<t>Hello</t>")


def test_anthropic_forced_tool_gets_a_tool_use_block(fake_llm):
    client = anthropic.Anthropic(api_key="k", base_url=fake_llm.anthropic_base_url, max_retries=0)
    msg = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=50, messages=[
        {"role": "user", "content": "hi"}], tools=[{"name": "labels", "input_schema": SCHEMA}],
        tool_choice={"type": "tool", "name": "labels"})
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "tool_use" and msg.content[0].input == {"label": "pos"}


def test_missing_key_is_401_in_each_format(fake_llm):
    status, _, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"))
    assert status == 401 and "API key" in body["error"]["message"]
    status, _, body = post(fake_llm.url + "/v1/messages", {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "x"}]})
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"


def test_api_keys_option_rejects_other_keys_and_masks_them(fake_llm):
    fake_llm.options.api_keys = frozenset({"good"})
    status, _, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"),
                           {"Authorization": "Bearer wrong-fake-key-for-tests"})
    assert status == 401 and "wrong-fake-key-for-tests" not in body["error"]["message"]
    assert post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"),
                {"Authorization": "Bearer good"})[0] == 200


def test_request_log_masks_auth_and_keeps_the_body(fake_llm):
    post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"), {"Authorization": "Bearer secret-1"})
    entry = fake_llm.requests[-1]
    assert entry["headers"]["authorization"] == "***" and entry["body"]["model"] == "gpt-4o-mini"
    assert entry["status"] == 200 and entry["api"] == "openai" and "secret-1" not in json.dumps(entry)


def test_anthropic_sampling_params_rejected_like_api_2026_10_21(fake_llm):
    body = {"model": "m", "max_tokens": 5, "temperature": 0, "messages": [{"role": "user", "content": "x"}]}
    status, _, err = post(fake_llm.url + "/v1/messages", body, {"x-api-key": "k"})
    assert status == 400 and "temperature" in err["error"]["message"]
    assert post(fake_llm.url + "/v1/messages", body, {"x-api-key": "k", "anthropic-version": "2023-06-01"})[0] == 200


def test_missing_model_or_max_tokens_is_400(fake_llm):
    assert post(fake_llm.openai_base_url + "/chat/completions", {"messages": [{"role": "user", "content": "x"}]},
                AUTH)[0] == 400
    assert post(fake_llm.url + "/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]},
                {"x-api-key": "k"})[0] == 400


def test_json_object_mode_reads_the_schema_from_the_system_prompt(fake_llm):
    body = chat_body("<t>Hello</t>", schema=None, response_format={"type": "json_object"})
    body["messages"][0]["content"] = "Answer as JSON matching:\n```json\n" + json.dumps(SCHEMA) + "\n```"
    _, _, resp = post(fake_llm.openai_base_url + "/chat/completions", body, AUTH)
    assert json.loads(resp["choices"][0]["message"]["content"]) == {"label": "pos"}


def test_json_schema_can_be_refused_like_some_compatible_servers(fake_llm):
    fake_llm.options.json_schema = False
    status, _, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"), AUTH)
    assert status == 400 and "json_schema" in body["error"]["message"]


# --- faults ----------------------------------------------------------------------------------------

def test_status_fault_fails_n_times_then_answers(fake_llm):
    fake_llm.options.retry_after = 2
    url = fake_llm.openai_base_url + "/chat/completions"
    results = [post(url, chat_body("x [[fault:429:2]]"), AUTH) for _ in range(3)]
    assert [r[0] for r in results] == [429, 429, 200]
    assert results[0][1]["retry-after"] == "2" and results[0][1]["retry-after-ms"] == "2000"
    assert [r[0] for r in (post(url, chat_body("y [[fault:503:always]]"), AUTH) for _ in range(3))] == [503] * 3
    assert post(url, chat_body("z [[fault:500]]"), AUTH)[0] == 500  # default: once
    assert post(url, chat_body("z [[fault:500]]"), AUTH)[0] == 200


def test_content_faults(fake_llm):
    url = fake_llm.openai_base_url + "/chat/completions"
    _, _, bad = post(url, chat_body("x [[fault:malformed]]"), AUTH)
    with pytest.raises(ValueError):
        json.loads(bad["choices"][0]["message"]["content"])
    _, _, cut = post(url, chat_body("x [[fault:truncated]]"), AUTH)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert '{"label": "pos"}'.startswith(cut["choices"][0]["message"]["content"])
    _, _, no = post(url, chat_body("x [[fault:refusal]]"), AUTH)
    assert no["choices"][0]["message"]["content"] is None and no["choices"][0]["message"]["refusal"]
    status, _, _ = post(url, chat_body("x [[fault:bogus]]"), AUTH)
    assert status == 400


def test_max_tokens_truncates_naturally(fake_llm):
    _, _, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("x", max_completion_tokens=2), AUTH)
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 2


def test_fault_rate_is_seeded_and_deterministic():
    def run():
        with FakeLLM(fault_rate=0.5, seed=3) as fake:
            return [post(fake.openai_base_url + "/chat/completions", chat_body(f"q{i}"), AUTH)[0]
                    for i in range(20)]
    first = run()
    assert first == run() and set(first) == {200, 500}
    with FakeLLM(fault_rate=1.0, fault_kinds=("refusal",)) as fake:
        _, _, body = post(fake.openai_base_url + "/chat/completions", chat_body("x"), AUTH)
        assert body["choices"][0]["message"]["refusal"]


def test_broken_answer_source_is_a_500(fake_llm):
    fake_llm.set_answers(TableAnswer({}, fallback=None))
    status, _, body = post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"), AUTH)
    assert status == 500 and "LookupError" in body["error"]["message"]


def test_reset_restores_defaults(fake_llm):
    fake_llm.options.latency_ms = 5
    fake_llm.set_answers(lambda i: {"x": 1})
    post(fake_llm.openai_base_url + "/chat/completions", chat_body("x"), AUTH)
    fake_llm.reset()
    assert fake_llm.requests == [] and fake_llm.options.latency_ms == 0
    assert isinstance(fake_llm.answers, SchemaAnswer)


def test_official_sdks_see_the_request_ids(fake_llm):
    oa = openai.OpenAI(api_key="k", base_url=fake_llm.openai_base_url, max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(**chat_body("x"))
    assert raw.headers["x-request-id"].startswith("req_") and raw.parse().choices[0].message.content
    an = anthropic.Anthropic(api_key="k", base_url=fake_llm.anthropic_base_url, max_retries=0)
    msg = an.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert msg._request_id.startswith("req_")


# --- answer sources ----------------------------------------------------------------------------------

def test_quote_comes_from_the_task_text():
    assert quote_from("Label the entities.\n<text>Ünïcode façade here</text>") == "Ünïcode"
    assert quote_from('Label:\n"""Alice went home"""') == "Alice"
    assert quote_from("Sentiment of this review: I loved it") == "it"
    assert quote_from("[[fault:429]] <text>Bob</text>") == "Bob"


def test_schema_answer_covers_strict_schema_shapes():
    schema = {
        "type": "object",
        "$defs": {"span": {"type": "object", "properties": {"text": {"type": "string"},
                                                           "labels": {"type": "array",
                                                                      "items": {"enum": ["PER", "ORG", "LOC"]},
                                                                      "minItems": 2}},
                           "required": ["text", "labels"], "additionalProperties": False}},
        "properties": {
            "spans": {"type": "array", "items": {"$ref": "#/$defs/span"}},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "box": {"type": "object", "properties": {k: {"type": "number", "minimum": 0, "maximum": 100}
                                                     for k in ("x", "y", "width", "height")}},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["a", "b"]}]},
            "count": {"type": ["number", "null"]},
            "flag": {"type": "boolean"},
            "kind": {"const": "fixed"},
            "empty": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
        },
    }
    ans = SchemaAnswer()(info("Find:\n<text>Paris is big</text>", schema))
    assert ans == {"spans": [{"text": "Paris", "labels": ["PER", "ORG"]}], "rating": 1,
                   "box": {"x": 25, "y": 25, "width": 25, "height": 25}, "maybe": "a", "count": 0,
                   "flag": False, "kind": "fixed", "empty": []}
    assert SchemaAnswer()(info("x", None)) == {}


def test_table_answer_longest_key_and_fallback():
    t = TableAnswer({"good": {"label": "pos"}, "not good": {"label": "neg"}})
    assert t(info("<t>this is not good</t>", SCHEMA)) == {"label": "neg"}
    assert t(info("<t>good</t>", SCHEMA)) == {"label": "pos"}
    assert t(info("<t>unknown</t>", SCHEMA)) == {"label": "pos"}  # SchemaAnswer fallback


def test_table_answer_error_rates_are_per_model_and_deterministic():
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b", "c"]}}}
    table = {f"task number {i:03d}": {"label": "abc"[i % 3]} for i in range(300)}
    t = TableAnswer(table, error_rates={"gpt-4o-mini": 0.3, "gpt-4o": 0.0, "cheap": 1.0}, seed=1)

    def wrong(model):
        return [k for k, v in table.items() if t(info(f"<t>{k}</t>", schema, model)) != v]

    assert wrong("gpt-4o") == [] and wrong("gpt-4o-2024-08-06") == []
    mini = wrong("gpt-4o-mini")
    assert 60 <= len(mini) <= 120 and mini == wrong("gpt-4o-mini")  # ~30%, the same tasks each run
    assert len(wrong("cheap-model")) == 300  # prefix match
    assert wrong("other") == []  # default rate 0
    assert t.error_rate("gpt-4o-mini-2024-07-18") == 0.3


def test_worsen_changes_one_thing():
    schema = {"type": "object", "properties": {"spans": {"type": "array", "items": {
        "type": "object", "properties": {"text": {"type": "string"}, "label": {"enum": ["PER", "ORG"]}}}}}}
    answer = {"spans": [{"text": "Ann", "label": "PER"}, {"text": "ACME", "label": "ORG"}]}
    for seed in range(20):
        changed = worsen(json.loads(json.dumps(answer)), schema, random.Random(seed))
        assert changed != answer
        diffs = (len(changed["spans"]) != 2) + sum(
            a != b for a, b in zip(changed["spans"], answer["spans"], strict=False) if len(changed["spans"]) == 2)
        assert diffs == 1


def test_table_answer_from_file(tmp_path):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"answers": {"hello": {"label": "neg"}}, "error_rates": {"x": 1.0}}))
    t = TableAnswer.from_file(str(path))
    assert t(info("<t>hello</t>", SCHEMA)) == {"label": "neg"}
    assert t(info("<t>hello</t>", SCHEMA, model="x")) == {"label": "pos"}


def test_load_answer_source():
    assert isinstance(load_answer_source("fakellm:SchemaAnswer"), SchemaAnswer)
    with pytest.raises(ValueError, match="pkg.module:factory"):
        load_answer_source("fakellm.SchemaAnswer")
    with pytest.raises(TypeError, match="not a callable"):
        load_answer_source("builtins:object")  # object() is not callable


# --- standalone ---------------------------------------------------------------------------------------

def test_cli_serves_until_terminated(tmp_path):
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"answers": {"hello": {"label": "neg"}}}))
    proc = subprocess.Popen([sys.executable, "-m", "fakellm", "--port", "0", "--table", str(table)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "test double" in line
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        _, _, body = post(url + "/v1/chat/completions", chat_body("<t>hello</t>"), AUTH)
        assert json.loads(body["choices"][0]["message"]["content"]) == {"label": "neg"}
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_cli_bad_answers_spec_is_one_line_error():
    out = subprocess.run([sys.executable, "-m", "fakellm", "--answers", "nope.nothing:x"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "cannot load answers" in out.stderr and "Traceback" not in out.stderr


# --- log-probabilities and sample variation (issue 11) -------------------------------------------

def _noisy(**kw):
    from fakellm.noisy import NoisyTableAnswer

    table = {f"review {i}": {"label": "pos" if i % 2 else "neg"} for i in range(200)}
    return NoisyTableAnswer(table, **kw)


def test_logprobs_in_the_openai_wire_format(fake_llm):
    import math

    fake_llm.set_answers(_noisy())
    client = openai.OpenAI(api_key="k", base_url=fake_llm.openai_base_url)
    schema = {"name": "x", "strict": True, "schema": SCHEMA}
    done = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "<t>review 7</t>"}],
                                          response_format={"type": "json_schema", "json_schema": schema},
                                          logprobs=True, top_logprobs=2)
    tokens = done.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == done.choices[0].message.content
    scored = [t for t in tokens if t.logprob < 0]
    assert len(scored) == 1 and scored[0].token in ("pos", "neg")  # the chosen value's first token carries log q
    assert [x.token for x in scored[0].top_logprobs] == [scored[0].token, "<other>"]
    q = math.exp(scored[0].logprob)
    assert math.exp(scored[0].top_logprobs[1].logprob) == pytest.approx(1 - q)
    plain = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "<t>review 7</t>"}])
    assert plain.choices[0].logprobs is None  # only when asked


def test_samples_vary_with_temperature_and_are_informative(fake_llm):
    src = _noisy(default_error_scale=0.8)
    fake_llm.set_answers(src)

    def ask(i, **extra):
        return post(fake_llm.openai_base_url + "/chat/completions", chat_body(f"<t>review {i}</t>", **extra),
                    AUTH)[2]["choices"][0]["message"]["content"]

    greedy = [ask(i) for i in range(200)]
    assert greedy == [ask(i) for i in range(200)]  # temperature absent: the same answer every time
    assert [ask(i, temperature=1.0, seed=3) for i in range(20)] == [ask(i, temperature=1.0, seed=3) for i in range(20)]
    truth = [json.dumps({"label": "pos" if i % 2 else "neg"}) for i in range(200)]
    wrong = [g != t for g, t in zip(greedy, truth, strict=True)]
    expected = sum(1 - src.p_right("gpt-4o-mini", f"review {i}") for i in range(200))
    assert abs(sum(wrong) - expected) < 3 * expected ** 0.5  # wrong with probability 1 - p(d)
    # hard tasks (low p) disagree more across samples than easy ones
    hard = sorted(range(200), key=lambda i: src.p_right("gpt-4o-mini", f"review {i}"))[:40]
    easy = sorted(range(200), key=lambda i: -src.p_right("gpt-4o-mini", f"review {i}"))[:40]

    def changes(ids):
        return sum(len({ask(i, temperature=1.0) for _ in range(4)}) > 1 for i in ids)

    assert changes(hard) > changes(easy) + 5


def test_the_benches_stand_in_keeps_connections_alive_like_a_hosted_api():
    """bench/bench_predict.py serves ``fakellm.__main__:wsgi`` with gunicorn's threaded worker: one
    connection carries many calls (werkzeug's server, behind ``python -m fakellm``, closes each)."""
    from fakellm.__main__ import keep_alive_server

    with keep_alive_server(threads=4) as url:
        client = openai.OpenAI(api_key="k", base_url=f"{url}/v1", max_retries=0)
        answers = [client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]) for _ in range(3)]
        assert all(a.headers.get("connection", "").lower() != "close" for a in answers)
        assert all(a.parse().choices[0].message.content is not None for a in answers)
