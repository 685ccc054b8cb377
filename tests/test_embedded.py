"""The embedded queue (no Redis): pre-labelling on import through Label Studio's real TASKS_CREATED webhook,
and unfinished chunks resumed after a restart."""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import yaml
from werkzeug.serving import make_server

from backend.app import create_app
from backend.embedded import NO_LABEL_STUDIO, EmbeddedQueue
from backend.runstore import open_run_store
from backend.runwork import split
from backend.versions import load_versions
from core.labelstudio import LabelStudioClient
from core.settings import Settings
from core.stores import SQLiteFile, sqlite_path
from fakellm.dataset import LABEL_CONFIG, make_tasks


def make_settings(tmp_path, fake_llm, label_studio=None) -> Settings:
    version = f"embedded-{uuid.uuid4().hex[:6]}"
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": version, "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label.\n<text>{text}</text>"}]}))
    ls = {"label_studio_url": label_studio.url, "label_studio_api_key": label_studio.token} if label_studio else {}
    return Settings(prompts_file=str(prompts), openai_api_key="test-key", openai_base_url=fake_llm.openai_base_url,
                    data_dir=str(tmp_path / "var"), provider_max_retries=0, **ls)


def versions_per_task(settings, pid) -> dict[int, list[str]]:
    tasks, _ = LabelStudioClient(settings).pull_project(pid, progress=False)
    return {t["id"]: [p["model_version"] for p in t["predictions"]] for t in tasks}


def test_without_label_studio_access_health_says_so(tmp_path, fake_llm):
    app = create_app(make_settings(tmp_path, fake_llm))
    assert app.config["QUEUE"] is None and app.config["ROUTES"].overflow is None
    assert app.test_client().get("/health").get_json()["warnings"] == {"label_studio": NO_LABEL_STUDIO}


@pytest.mark.labelstudio
def test_tasks_created_is_prelabelled_in_the_backend_without_redis(label_studio, fake_llm, tmp_path):
    settings = make_settings(tmp_path, fake_llm, label_studio)
    version = load_versions(settings.prompts_file).default
    app = create_app(settings, load_versions(settings.prompts_file))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ls = label_studio.sdk()
        pid = label_studio.create_project(LABEL_CONFIG, title="embedded prelabel")
        ls.ml.create(project=pid, url=f"http://127.0.0.1:{server.server_port}", title="LLM", is_interactive=False)
        ls.projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(12)])
        store = open_run_store(settings)
        end = time.time() + 60
        while not store.runs(pid) and time.time() < end:  # the webhook is sent asynchronously
            time.sleep(0.2)
        assert app.config["QUEUE"].wait_idle(timeout=120)
        per_task = versions_per_task(settings, pid)
        assert len(per_task) == 12 and all(v == [version] for v in per_task.values()), per_task
        [run] = store.runs(pid)
        assert (run["source"], run["mode"], run["status"], run["predicted"]) == ("import", "embedded", "finished", 12)
    finally:
        server.shutdown()


@pytest.mark.labelstudio
def test_unfinished_chunks_are_resumed_after_a_restart(label_studio, fake_llm, tmp_path):
    settings = make_settings(tmp_path, fake_llm, label_studio)
    version = load_versions(settings.prompts_file).default
    pid = label_studio.create_project(LABEL_CONFIG, title="embedded resume")
    label_studio.sdk().projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(6)],
                                             commit_to_project=True)
    ids = sorted(t.id for t in label_studio.sdk().tasks.list(project=pid))
    # what a backend killed right after queueing a run leaves behind: the run record and its pending chunks
    chunks = split("run-resume-1", pid, version, ids, size=4)
    open_run_store(settings).create("run-resume-1", {"project": pid, "version": version, "chunks": 2,
                                                     "created": time.time(), "selected": 6, "source": "import"})
    db = SQLiteFile(sqlite_path(settings, "embedded-jobs.sqlite3"),
                    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, chunk TEXT, attempts INTEGER DEFAULT 0, "
                    "state TEXT DEFAULT 'pending', error TEXT)")
    for c in chunks:
        db.execute("INSERT INTO jobs (id, chunk) VALUES (?, ?)", (c.job_id, json.dumps(c.__dict__)))
    restarted = EmbeddedQueue(settings)
    assert restarted.wait_idle(timeout=120)
    assert versions_per_task(settings, pid) == {i: [version] for i in ids}
    assert db.query("SELECT COUNT(*) FROM jobs")[0][0] == 0
    assert open_run_store(settings).get("run-resume-1")["status"] == "finished"
