"""The response cache (backend/cache.py) around the provider call in the Predictor.

Provider calls go through the real openai SDK to the stand-in LLM; requests are counted there.
"""
from __future__ import annotations

import base64
import sqlite3
import uuid

import pytest
from redis import Redis

from backend.cache import (
    CachedAnswer,
    RedisResponseCache,
    SQLiteResponseCache,
    cache_key,
    open_response_cache,
)
from backend.ledger import SQLiteLedger
from backend.predictor import Predictor
from backend.providers import ProviderPool
from backend.providers.base import ImagePart, TextPart
from backend.versions import parse_versions
from core.settings import Settings
from core.stores import delete_keys
from fakellm.dataset import LABEL_CONFIG, make_tasks

REDIS_URL = "redis://127.0.0.1:6379/0"
REVIEW = "Label this review.\n<text>{text}</text>"


def _versions(**extra):
    return parse_versions({"versions": [
        {"id": "v1", "provider": "openai", "model": "gpt-4o-mini", "instruction": REVIEW},
        {"id": "v-nocache", "provider": "openai", "model": "gpt-4o-mini", "instruction": REVIEW, "cache": False},
        {"id": "v-temp", "provider": "openai", "model": "gpt-4o-mini", "instruction": REVIEW,
         "params": {"temperature": 0.7}},
    ]})


@pytest.fixture
def settings(tmp_path, fake_llm):
    return Settings(openai_api_key="test-key", openai_base_url=fake_llm.openai_base_url, provider_max_retries=0,
                    provider_timeout=10, data_dir=str(tmp_path / "var"))


@pytest.fixture(params=["sqlite", "redis"])
def cache(request, tmp_path):
    if request.param == "sqlite":
        c = SQLiteResponseCache(str(tmp_path / "cache.sqlite3"))
        yield c
        c.close()
        return
    prefix = f"test-cache-{uuid.uuid4().hex[:10]}"
    c = RedisResponseCache(REDIS_URL, prefix=prefix, ttl_s=600)
    yield c
    c.close()
    delete_keys(Redis.from_url(REDIS_URL), prefix)


def _calls(fake_llm) -> int:
    return sum(1 for e in fake_llm.requests if e["path"].endswith("/chat/completions"))


def _predict(predictor, tasks, version="v1"):
    return predictor.predict(tasks, LABEL_CONFIG, version, project="9")


def test_second_prediction_of_the_same_tasks_comes_from_the_cache(settings, cache, fake_llm, tmp_path):
    ledger = SQLiteLedger(str(tmp_path / "ledger.sqlite3"))
    predictor = Predictor(settings, _versions(), ledger=ledger, cache=cache)
    tasks = make_tasks(4)
    first = _predict(predictor, tasks)
    assert all(o.ok and not o.cached for o in first) and _calls(fake_llm) == 4
    second = _predict(predictor, tasks)
    assert _calls(fake_llm) == 4  # no new request reached the LLM
    assert all(o.ok and o.cached and o.usage is None for o in second)
    assert [o.regions for o in second] == [o.regions for o in first]
    recs = ledger.records("v1", "9")
    paid, cached = recs[:4], recs[4:]
    assert [r.cached for r in recs] == [False] * 4 + [True] * 4
    assert all(r.usd == 0.0 and r.input_tokens == r.output_tokens == 0 for r in cached)
    # what each cached answer saved is what its original call cost (same task ids, same tokens)
    assert sorted((r.task_id, r.saved_usd) for r in cached) == sorted((r.task_id, r.usd) for r in paid)
    assert all(r.usd and r.usd > 0 for r in paid)
    summary = ledger.summary("v1", "9")
    assert summary["usd"] == pytest.approx(sum(r.usd for r in paid)) and summary["errors"] == {}


def test_cache_false_and_no_cache_bypass_it(settings, cache, fake_llm):
    tasks = make_tasks(2)
    predictor = Predictor(settings, _versions(), cache=cache)
    _predict(predictor, tasks, "v-nocache")
    _predict(predictor, tasks, "v-nocache")
    assert _calls(fake_llm) == 4  # `cache: false` in prompts.yaml: every prediction calls the LLM
    uncached = Predictor(settings, _versions(), cache=None)  # what `scoring run --no-cache` builds
    _predict(uncached, tasks)
    _predict(uncached, tasks)
    assert _calls(fake_llm) == 8
    assert not any(o.cached for o in _predict(predictor, tasks))  # nothing was stored meanwhile
    assert _calls(fake_llm) == 10


def test_errors_are_never_cached(settings, cache, fake_llm):
    predictor = Predictor(settings, _versions(), cache=cache)
    faulty = {"id": 1, "data": {"text": "Broken today [[fault:500]]"}}      # 500 once, then answered
    malformed = {"id": 2, "data": {"text": "Garbled [[fault:malformed]]"}}   # never valid JSON
    first = _predict(predictor, [faulty, malformed])
    assert [o.status for o in first] == ["provider", "invalid_output"]
    second = _predict(predictor, [faulty, malformed])
    assert _calls(fake_llm) == 4  # both went to the LLM again
    assert (second[0].ok, second[0].cached, second[1].status) == (True, False, "invalid_output")
    third = _predict(predictor, [faulty, malformed])
    assert _calls(fake_llm) == 5 and third[0].cached and not third[1].cached


def test_a_failing_cache_never_costs_a_prediction(settings, fake_llm, caplog):
    broken = RedisResponseCache("redis://127.0.0.1:1/0", prefix="test-cache-down")  # nothing listens there
    predictor = Predictor(settings.replace(predict_concurrency=1), _versions(), cache=broken)
    outcomes = _predict(predictor, make_tasks(3))
    assert all(o.ok and not o.cached for o in outcomes) and _calls(fake_llm) == 3
    # one warning, then the cache is left alone for a while instead of failing once per task
    assert len([r for r in caplog.records if "response cache" in r.getMessage()]) == 1


def test_the_key_covers_what_determines_the_answer(settings):
    versions, pool = _versions(), ProviderPool()
    base, temp = pool.provider(versions.get("v1"), settings), pool.provider(versions.get("v-temp"), settings)
    other_url = pool.provider(versions.get("v1"), settings.replace(openai_base_url="http://127.0.0.1:9/v1"))
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAA"
                           "ABJRU5ErkJggg==")

    def key(provider=base, system="s", parts=None, schema=None, name="labels"):
        return cache_key(provider, system, list(parts or [TextPart("t")]), schema or {"type": "object"}, name)

    keys = [key(), key(temp), key(other_url), key(system="s2"), key(parts=[TextPart("u")]),
            key(schema={"type": "object", "required": ["a"]}), key(name="other"),
            key(parts=[TextPart("t"), ImagePart(data=png)]), key(parts=[TextPart("t"), ImagePart(data=png + b"x")]),
            key(parts=[TextPart("t"), ImagePart(url="http://x/a.png")])]
    assert len(set(keys)) == len(keys)
    assert key() == key(pool.provider(versions.get("v1"), settings.replace(openai_api_key="another-key")))


def test_holds_says_which_keys_are_answered_in_batches(cache, monkeypatch):
    """A run's plan asks for all its tasks at once (``holds``), not one round trip a task."""
    import backend.cache as cache_module

    monkeypatch.setattr(cache_module, "HOLDS_BATCH", 4)
    keys = [f"{i:064x}" for i in range(11)]
    for k in keys[::3]:
        cache.put(k, CachedAnswer({"a": 1}, '{"a": 1}', 10, 2))
    assert cache.holds(keys) == set(keys[::3])
    assert cache.holds([]) == set()


def test_holds_misses_expired_sqlite_entries(tmp_path):
    c = SQLiteResponseCache(str(tmp_path / "c.sqlite3"), ttl_s=60)
    c.put("k1", CachedAnswer({}, "{}"))
    with sqlite3.connect(str(tmp_path / "c.sqlite3")) as db:
        db.execute("UPDATE answers SET ts = ts - 120")
    assert c.holds(["k1"]) == set() and c.get("k1") is None
    c.close()


def test_open_response_cache_follows_the_settings(tmp_path):
    assert open_response_cache(Settings(data_dir=str(tmp_path), response_cache=False)) is None
    sqlite_cache = open_response_cache(Settings(data_dir=str(tmp_path)))
    assert isinstance(sqlite_cache, SQLiteResponseCache) and sqlite_cache.path.endswith("response-cache.sqlite3")
    assert isinstance(open_response_cache(Settings(redis_url=REDIS_URL)), RedisResponseCache)
    env = Settings.from_env({"RESPONSE_CACHE": "off", "RESPONSE_CACHE_TTL_DAYS": "2"})
    assert (env.response_cache, env.response_cache_ttl_days) == (False, 2.0)


def test_sqlite_entries_expire(tmp_path):
    c = SQLiteResponseCache(str(tmp_path / "c.sqlite3"), ttl_s=60)
    c.put("k", CachedAnswer({"a": 1}, '{"a": 1}', 3, 4))
    assert c.get("k") == CachedAnswer({"a": 1}, '{"a": 1}', 3, 4)
    with sqlite3.connect(c.path) as db:
        db.execute("UPDATE answers SET ts = ts - 120")
    assert c.get("k") is None


def test_an_older_ledger_file_gains_the_cache_columns(tmp_path):
    path = str(tmp_path / "ledger.sqlite3")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE usage (id INTEGER PRIMARY KEY, version TEXT NOT NULL, task_id, project TEXT, "
                   "provider TEXT NOT NULL, model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens "
                   "INTEGER NOT NULL, usd REAL, latency_s REAL NOT NULL, status TEXT NOT NULL, ts REAL NOT NULL)")
        db.execute("INSERT INTO usage VALUES (1, 'v1', 5, '9', 'openai', 'm', 10, 2, 0.1, 0.5, 'ok', 1.0)")
    [rec] = SQLiteLedger(path).records("v1")
    assert (rec.task_id, rec.cached, rec.saved_usd) == (5, False, None)
