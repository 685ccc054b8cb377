"""Limits that hold across processes (backend.limits): real processes, real Redis, the stand-in over HTTP.

Cross-process tests run two subprocesses, each with its own Predictor, against one stand-in
LLM server in this process, sharing Redis on 127.0.0.1:6379.  Every test uses a model name of
its own, so its Redis keys (``llm-prelabel:limits:*<model>*``) are its own; they are deleted after.

The rpm test uses ``RATE_LIMIT_WINDOW_S=5``: the 60 s window scaled to 5 s, so ``rpm: 120`` is
10 requests per 5 s (held over 6 s: the window's 1 s margin), checked on the stand-in's arrival times.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import redis
from werkzeug.serving import make_server

from backend.app import create_app
from backend.limits import Gates, Limits, LocalStore, RedisStore, parse_limits
from backend.predictor import Predictor
from backend.versions import parse_versions
from core.errors import VersionError
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_URL = "redis://127.0.0.1:6379/0"
INSTRUCTION = "Label the review.\n<text>{text}</text>"


def _redis_or_skip() -> redis.Redis:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return r


@pytest.fixture
def model():
    """A model name of this test's own: its Redis keys contain it, and are deleted afterwards."""
    name = f"limits-test-{uuid.uuid4().hex[:10]}"
    yield name
    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(match=f"llm-prelabel:limits:*{name}*", count=1000))
        if keys:
            r.delete(*keys)
    except redis.RedisError:
        pass


def _tasks(tag: str, n: int, start: int = 0) -> list[dict]:
    return [{"id": start + i, "data": {"text": f"review {tag}{start + i} is fine"}} for i in range(n)]


def _versions(model: str, limits: dict | None = None):
    v = {"id": "v1", "provider": "openai", "model": model, "instruction": INSTRUCTION}
    if limits is not None:
        v["limits"] = limits
    return parse_versions({"versions": [v]})


# A subprocess: one Predictor over `n` tasks; prints the count of each outcome status as JSON.
WORKER = """
import json, sys
from backend.predictor import Predictor
from backend.versions import parse_versions
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG
cfg = json.loads(sys.argv[1])
settings = Settings(openai_api_key="k", openai_base_url=cfg["base_url"], redis_url=cfg["redis_url"],
                    **cfg["settings"])
v = {"id": "v1", "provider": "openai", "model": cfg["model"], "instruction": cfg["instruction"]}
if cfg["limits"] is not None:
    v["limits"] = cfg["limits"]
predictor = Predictor(settings, parse_versions({"versions": [v]}), cache=None)
tasks = [{"id": i, "data": {"text": f"review {cfg['tag']}{i} is fine"}} for i in range(cfg["n"])]
outcomes = predictor.predict(tasks, LABEL_CONFIG, None)
counts = {}
for o in outcomes:
    counts[o.status] = counts.get(o.status, 0) + 1
print(json.dumps(counts), flush=True)
"""


def _run_two(fake, model: str, limits: dict | None, n: int, **settings) -> list[dict]:
    """Run WORKER in two processes at once (tags A and B); their status counts."""
    procs = []
    for tag in "AB":
        cfg = {"base_url": fake.openai_base_url, "redis_url": REDIS_URL, "model": model, "limits": limits,
               "instruction": INSTRUCTION, "tag": tag, "n": n, "settings": settings}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(cfg)], cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _most_in_window(times: list[float], window: float) -> int:
    """The most arrival times within any half-open interval of ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# --- prompts.yaml: the `limits:` key --------------------------------------------------------------

def test_limits_are_validated_at_load():
    assert _versions("m", {"rpm": 500, "tpm": 200000, "max_concurrency": 8}).get("v1").limits == Limits(8, 500, 200000)
    assert _versions("m").get("v1").limits is None
    for bad, says in [({"rpm": 0}, "limits.rpm is 0"), ({"rps": 5}, "unknown keys ['rps']"),
                      ({"tpm": True}, "limits.tpm is True"), ([5], "must be a mapping")]:
        with pytest.raises(VersionError, match=f"version 'v1'.*{says.replace('[', '.').replace(']', '.')}"):
            _versions("m", bad)
    assert parse_limits(None, "x") is None


def test_versions_of_one_model_share_one_budget():
    base = {"provider": "openai", "model": "m", "instruction": INSTRUCTION}
    vs = parse_versions({"versions": [{**base, "id": "a", "limits": {"rpm": 60}}, {**base, "id": "b"},
                                      {**base, "id": "c", "model": "other"}]})
    assert vs.get("b").limits == vs.get("a").limits == Limits(rpm=60)  # b calls the same model: same budget
    assert vs.get("c").limits is None
    with pytest.raises(VersionError, match="'a' and 'b' call the same model .* different `limits`"):
        parse_versions({"versions": [{**base, "id": "a", "limits": {"rpm": 60}},
                                     {**base, "id": "b", "limits": {"rpm": 61}}]})


# --- in one process ---------------------------------------------------------------------------------

def test_max_concurrency_in_process(fake_llm, model):
    fake_llm.options.latency_ms = 150
    settings = Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, predict_concurrency=8)
    outcomes = Predictor(settings, _versions(model, {"max_concurrency": 2}), cache=None).predict(
        _tasks("x", 10), LABEL_CONFIG, None)
    assert [o.status for o in outcomes] == ["ok"] * 10
    assert fake_llm.max_in_flight == 2


def test_waiting_for_a_slot_ends_at_the_deadline(fake_llm, model):
    settings = Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, predict_deadline=1.5,
                        rate_limit_window_s=60)
    t0 = time.monotonic()
    outcomes = Predictor(settings, _versions(model, {"rpm": 1}), cache=None).predict(
        _tasks("x", 3), LABEL_CONFIG, None)
    elapsed = time.monotonic() - t0
    assert sorted(o.status for o in outcomes) == ["deadline", "deadline", "ok"]
    assert "PREDICT_DEADLINE" in next(o.message for o in outcomes if o.status == "deadline")
    assert elapsed < 5 and len(fake_llm.requests) == 1   # ended, not hung; the others were never sent


def test_calls_in_flight_capped_across_concurrent_predict_requests(fake_llm, tmp_path, model):
    fake_llm.options.latency_ms = 100
    settings = Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, data_dir=str(tmp_path),
                        predict_concurrency=16, max_calls_in_flight=5, response_cache=False)
    server = make_server("127.0.0.1", 0, create_app(settings, _versions(model)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    results: list = []

    def batch(tag: str) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=60) as http:
            body = {"tasks": _tasks(tag, 12), "label_config": LABEL_CONFIG}
            results.append(http.post("/predict", json=body).json()["results"])
    try:
        threads = [threading.Thread(target=batch, args=(tag,)) for tag in "ABCD"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.shutdown()
    assert len(results) == 4 and all(all(r) for res in results for r in res)  # 48 tasks, all labelled
    assert fake_llm.max_in_flight == 5   # 4 batches x 16 threads, 5 calls at a time


def test_retry_after_is_honoured(fake_llm, model):
    fake_llm.options.retry_after = 1.0
    settings = Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, provider_max_retries=2)
    outcomes = Predictor(settings, _versions(model), cache=None).predict(
        [{"id": 1, "data": {"text": "a [[fault:429]] b"}}], LABEL_CONFIG, None)
    assert outcomes[0].ok
    first, second = fake_llm.requests
    assert (first["status"], second["status"]) == (429, 200) and second["t"] - first["t"] >= 1.0


# --- the Redis store ----------------------------------------------------------------------------------

def test_redis_slots_of_a_killed_process_expire(model):
    _redis_or_skip()
    holder = ("import sys, time\nfrom backend.limits import RedisStore\n"
              f"s = RedisStore({REDIS_URL!r})\n"
              f"print([s.enter({model!r}, 2, 1.0)[0] is not None for _ in range(2)], flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "[True, True]"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = RedisStore(REDIS_URL)
    assert store.enter(model, 2, 1.0)[0] is None           # both slots still leased by the dead process
    time.sleep(1.1)
    token, _ = store.enter(model, 2, 1.0)                   # its leases expired: no slot leaked
    assert token is not None
    store.leave(model, token, 2)


def test_redis_down_falls_back_to_the_process(caplog, model):
    gates = Gates(Settings(), shared=RedisStore("redis://127.0.0.1:1/0"))
    with gates.call(model, Limits(rpm=60, max_concurrency=1), lambda: 10, time.monotonic() + 5, 30) as lease:
        lease.used = 10
    assert "Redis failed" in caplog.text and "this process only" in caplog.text
    assert isinstance(gates.limiter(model, Limits(rpm=60, max_concurrency=1)).store(), LocalStore)


# --- across two processes sharing Redis ---------------------------------------------------------------

def test_rpm_held_by_two_processes(fake_llm, model):
    _redis_or_skip()
    window = 5   # RATE_LIMIT_WINDOW_S for this test: 120 rpm = 10 requests per 5 s
    counts = _run_two(fake_llm, model, {"rpm": 120}, n=60, rate_limit_window_s=window, predict_deadline=16,
                      predict_concurrency=8)
    times = [r["t"] for r in fake_llm.requests]
    assert all(r["status"] == 200 for r in fake_llm.requests)
    assert _most_in_window(times, window) <= 10
    assert 20 <= len(times) <= 40    # ~16 s at 10 per 6 s: the budget is used, not just respected
    texts = " ".join(r["body"]["messages"][1]["content"] for r in fake_llm.requests)
    assert "review A" in texts and "review B" in texts     # both processes called
    assert sum(c.get("ok", 0) for c in counts) == len(times)
    assert sum(c.get("deadline", 0) for c in counts) == 120 - len(times)


def test_max_concurrency_held_by_two_processes(fake_llm, model):
    _redis_or_skip()
    fake_llm.options.latency_ms = 200
    counts = _run_two(fake_llm, model, {"max_concurrency": 3}, n=15, predict_concurrency=8)
    assert counts == [{"ok": 15}, {"ok": 15}]
    assert fake_llm.max_in_flight == 3    # 16 threads in two processes, 3 calls at a time


def test_a_429_with_retry_after_slows_every_process(fake_llm, model):
    """The stand-in allows 5 requests per 2 s and the versions declare no limits: each 429's
    Retry-After becomes a cool-down in Redis that both processes honour, so nothing is sent
    while it lasts and the 429s stay few (without it, every idle thread would meet its own 429)."""
    _redis_or_skip()
    fake_llm.options.rpm_limit, fake_llm.options.rate_window_s = 5, 2.0
    counts = _run_two(fake_llm, model, None, n=10, predict_concurrency=4, provider_max_retries=20,
                      predict_deadline=40)
    assert counts == [{"ok": 10}, {"ok": 10}]
    log = fake_llm.requests
    rejected = [r for r in log if r["status"] == 429]
    assert 1 <= len(rejected) <= 8 * 4 and len(log) - len(rejected) == 20   # few 429s: at most the 8 threads per window
    for r in rejected:   # nobody sent anything while a cool-down lasted (0.2 s: the time to write it to Redis)
        quiet = (r["t"] + 0.2, r["t"] + int(r["retry_after_ms"]) / 1000 - 0.05)
        assert not [x for x in log if quiet[0] < x["t"] < quiet[1]], (r, quiet)
