"""Fault injection through the ML backend's ``/predict``, against real processes.

The backend runs as its own process (``python -m backend``) and calls the stand-in LLM
(``fakellm``, a real HTTP server) through the real openai and anthropic SDKs.  One batch per
provider carries every fault the stand-in can inject -- 429 and 5xx (once: recovered by the
SDK's retry; always: the task fails), timeouts, malformed, truncated and refused answers --
next to clean tasks.  The batch must answer one entry per task, the failed ones without a
prediction (``FAILED_TASK_RESULT=skip``: Label Studio asks again), and the usage ledger must
hold exactly one record per task with its reason.  Nothing is lost.
(The write-back side of fault injection, Label Studio answering 5xx or stopping mid-write, is
in tests/test_labelstudio_writeback.py.)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from backend.ledger import open_ledger
from core.settings import Settings
from demo.lsserver import free_port
from fakellm.dataset import LABEL_CONFIG, make_tasks

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "7.1700000000"

# marker in the task text -> the task's status in the ledger ("ok": the task gets a prediction)
FAULTS = {
    "[[fault:429]]": "ok",                  # once: the SDK's retry recovers
    "[[fault:500]]": "ok",
    "[[fault:429:always]]": "rate_limited",
    "[[fault:500:always]]": "provider",
    "[[fault:503:always]]": "provider",
    "[[fault:timeout]]": "timeout",
    "[[fault:malformed]]": "invalid_output",
    "[[fault:truncated]]": "truncated",
    "[[fault:refusal]]": "refusal",
}
CLEAN = 3   # tasks without a fault, before, between and after the faulty ones
VERSIONS = {"oa-v1": ("openai", "gpt-4o-mini"), "an-v1": ("anthropic", "claude-haiku-4-5")}



@pytest.fixture
def backend(tmp_path, fake_llm):
    """``python -m backend`` on a free port of 127.0.0.1, talking to ``fake_llm``; stopped by its PID."""
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"default": "oa-v1", "versions": [
        {"id": vid, "provider": provider, "model": model, "instruction": "Label this review.\n<text>{text}</text>"}
        for vid, (provider, model) in VERSIONS.items()]}))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PROMPTS_FILE=str(prompts), DATA_DIR=str(tmp_path / "var"), OPENAI_API_KEY="test-openai-key",
               OPENAI_BASE_URL=fake_llm.openai_base_url, ANTHROPIC_API_KEY="test-anthropic-key",
               ANTHROPIC_BASE_URL=fake_llm.anthropic_base_url, PROVIDER_TIMEOUT="1", PROVIDER_MAX_RETRIES="1",
               LOG_LEVEL="WARNING")
    port = free_port()
    log = (tmp_path / "backend.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "backend.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.2)
        yield url, Settings(data_dir=str(tmp_path / "var"))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def faulty_batch() -> tuple[list[dict], dict]:
    """Tasks with one fault marker each (plus clean ones), and task id -> expected ledger status."""
    markers = [None, *list(FAULTS)[:4], None, *list(FAULTS)[4:], None]
    assert markers.count(None) == CLEAN
    tasks = make_tasks(len(markers))
    expected = {}
    for task, marker in zip(tasks, markers, strict=True):
        task.pop("annotations", None)   # Label Studio sends tasks to /predict; their annotations do not matter here
        if marker:
            task["data"]["text"] += f" {marker}"
        expected[task["id"]] = FAULTS.get(marker, "ok") if marker else "ok"
    return tasks, expected


@pytest.mark.parametrize("version", list(VERSIONS))
def test_every_provider_fault_is_one_task_with_its_reason_and_no_task_is_lost(backend, fake_llm, version):
    url, settings = backend
    fake_llm.options.timeout_s = 5            # longer than PROVIDER_TIMEOUT=1: the SDK gives up first
    setup = {"project": PROJECT, "schema": LABEL_CONFIG, "hostname": "http://localhost:8080", "access_token": "x",
             "extra_params": {"version": version}}
    assert httpx.post(f"{url}/setup", json=setup, timeout=30).json()["model_version"] == version
    tasks, expected = faulty_batch()
    body = {"tasks": tasks, "project": PROJECT, "label_config": LABEL_CONFIG,
            "params": {"login": None, "password": None, "context": None}}
    r = httpx.post(f"{url}/predict", json=body, timeout=120)
    assert r.status_code == 200, r.text
    results = r.json()["results"]

    records = open_ledger(settings).records(version, PROJECT.split(".")[0])
    injected = [e for e in fake_llm.requests if e["fault"]]
    recorded = {rec.task_id for rec in records}
    lost = sum(1 for i, t in enumerate(tasks) if i >= len(results) or t["id"] not in recorded)
    print(f"faults injected: {len(injected)}, tasks lost: {lost} ({version})")
    assert lost == 0 and len(injected) >= len(FAULTS)

    assert len(results) == len(tasks)          # one entry per task, in order
    for task, res in zip(tasks, results, strict=True):
        if expected[task["id"]] == "ok":
            assert res["result"] and res["model_version"] == version, (task["data"]["text"], res)
        else:
            assert res == [], (task["data"]["text"], res)   # no prediction: Label Studio asks again later
    assert sorted(rec.task_id for rec in records) == sorted(expected)     # exactly one record per task
    assert {rec.task_id: rec.status for rec in records} == expected       # each with its reason
