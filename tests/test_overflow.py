"""``/predict`` overflow against a real Label Studio 1.23.2 and a slow stand-in LLM: the tasks the
deadline leaves over are written later by the embedded queue (no Redis) or an RQ worker (Redis)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from redis import Redis
from rq import Queue

from backend.app import create_app
from backend.versions import load_versions
from core.labelstudio import LabelStudioClient
from core.settings import Settings
from core.stores import delete_keys, key
from fakellm.dataset import LABEL_CONFIG, make_tasks

pytestmark = pytest.mark.labelstudio
REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 12


def calls(fake_llm) -> int:
    return sum(1 for e in fake_llm.requests if e["path"].endswith("/chat/completions"))


@pytest.mark.parametrize("mode", ["embedded", "queue"])
def test_tasks_past_the_deadline_are_written_later_once_and_not_predicted_meanwhile(
        mode, label_studio, fake_llm, tmp_path):
    version = f"overflow-{mode}-{uuid.uuid4().hex[:6]}"
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": version, "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label.\n<text>{text}</text>"}]}))
    queue_name = f"test-overflow-{uuid.uuid4().hex[:8]}"
    env_vars = {"PROMPTS_FILE": str(prompts), "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake_llm.openai_base_url,
                "DATA_DIR": str(tmp_path / "var"), "LABEL_STUDIO_URL": label_studio.url,
                "LABEL_STUDIO_API_KEY": label_studio.token, "PREDICT_DEADLINE": "1", "PREDICT_CONCURRENCY": "2",
                "PROVIDER_MAX_RETRIES": "0", "RQ_QUEUE": queue_name,
                **({"REDIS_URL": REDIS_URL} if mode == "queue" else {})}
    settings = Settings.from_env(env_vars)
    fake_llm.options.latency_ms = 400
    pid = label_studio.create_project(LABEL_CONFIG, title=f"overflow {mode}")
    label_studio.sdk().projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(N)],
                                             commit_to_project=True)
    tasks = [{"id": t.id, "data": t.data} for t in label_studio.sdk().tasks.list(project=pid)]
    app = create_app(settings, load_versions(str(prompts)))
    client = app.test_client()
    body = {"tasks": tasks, "project": f"{pid}.1700000000", "label_config": LABEL_CONFIG}
    try:
        t0 = time.monotonic()
        results = client.post("/predict", json=body).get_json()["results"]
        assert time.monotonic() - t0 < 6 and len(results) == N      # in time, one entry per task
        answered = [t["id"] for t, r in zip(tasks, results, strict=True) if r]
        handed = [t["id"] for t, r in zip(tasks, results, strict=True) if not r]
        assert answered and handed, results
        # Label Studio keeps the answered ones; asking again for the handed-off ones calls no model
        LabelStudioClient(settings).import_predictions(
            pid, [dict(r, task=t["id"]) for t, r in zip(tasks, results, strict=True) if r])
        again = client.post("/predict", json=dict(body, tasks=[t for t in tasks if t["id"] in handed]))
        assert again.get_json()["results"] == [[] for _ in handed]
        if mode == "embedded":
            assert app.config["QUEUE"].wait_idle(timeout=120)
        else:
            env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env_vars}
            worker = subprocess.run([sys.executable, "-m", "scoring", "worker", "--burst"], cwd=REPO, env=env,
                                    capture_output=True, text=True, timeout=300)
            assert worker.returncode == 0, worker.stderr[-2000:]
        listed, _ = LabelStudioClient(settings).pull_project(pid, progress=False)
        per_task = {t["id"]: [p["model_version"] for p in t["predictions"]] for t in listed}
        assert per_task == {t["id"]: [version] for t in tasks}    # none lost, none duplicated
        assert calls(fake_llm) <= N + 2   # at most the calls in flight at the deadline are made again
        # the markers are gone: a later /predict predicts again (Label Studio asked for them explicitly)
        assert app.config["ROUTES"].overflow.held(str(pid), version, tasks) == set()
    finally:
        if mode == "queue":
            conn = Redis.from_url(REDIS_URL)
            Queue(queue_name, connection=conn).delete(delete_jobs=True)
            delete_keys(conn, key("runs", queue_name))
