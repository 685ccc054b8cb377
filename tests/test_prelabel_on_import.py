"""Pre-labelling on import, end to end: Label Studio 1.23.2 sends TASKS_CREATED to the backend's
webhook, the backend enqueues ``backend.jobs.prelabel_tasks`` in Redis, a real worker process
(``python -m scoring worker --burst``) runs it and writes the predictions back with the SDK.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry
from werkzeug.serving import make_server

from backend.app import create_app
from backend.versions import load_versions
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG, make_tasks

pytestmark = pytest.mark.labelstudio
REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tasks_imported_after_connecting_are_prelabelled(label_studio, fake_llm, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": "import-v1", "provider": "openai", "model": "gpt-4o-mini",
         "instruction": "Label.\n<text>{text}</text>"}]}))
    queue_name = f"test-prelabel-{uuid.uuid4().hex[:8]}"
    env_vars = {
        "PROMPTS_FILE": str(prompts), "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "REDIS_URL": REDIS_URL, "RQ_QUEUE": queue_name, "DATA_DIR": str(tmp_path / "var"),
        "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
    }
    settings = Settings.from_env(env_vars)
    server = make_server("127.0.0.1", 0, create_app(settings, load_versions(settings.prompts_file)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = Redis.from_url(REDIS_URL)
    try:
        ls = label_studio.sdk()
        pid = label_studio.create_project(LABEL_CONFIG, title="prelabel on import")
        ls.ml.create(project=pid, url=f"http://127.0.0.1:{server.server_port}", title="LLM", is_interactive=False)
        ls.projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(12)])
        q = Queue(queue_name, connection=conn)
        deadline = time.time() + 30
        while not q.count and time.time() < deadline:  # the webhook is sent asynchronously
            time.sleep(0.2)
        assert q.count >= 1, "TASKS_CREATED did not reach the backend's webhook"
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env_vars}
        worker = subprocess.run([sys.executable, "-m", "scoring", "worker", "--burst"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stderr[-2000:]
        tasks = list(ls.tasks.list(project=pid, fields="all"))
        assert len(tasks) == 12
        for t in tasks:
            preds = [p if isinstance(p, dict) else p.dict() for p in t.predictions or []]
            assert [p["model_version"] for p in preds] == ["import-v1"], t.id
            assert preds[0]["result"]
        assert label_studio.token not in worker.stderr + worker.stdout
        # The job itself labelled every task, once each (not Label Studio's task-open path).
        finished = FinishedJobRegistry(queue=q).get_job_ids()
        results = [Job.fetch(job_id, connection=conn).return_value() for job_id in finished]
        assert results
        assert sum(r["predicted"] for r in results) == 12 and sum(r["skipped_existing"] for r in results) == 0
        assert len([e for e in fake_llm.requests if e["status"] == 200]) == 12
    finally:
        server.shutdown()
        Queue(queue_name, connection=conn).delete(delete_jobs=True)
