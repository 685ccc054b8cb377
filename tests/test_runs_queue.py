"""``python -m scoring run`` in queue mode against a real Label Studio 1.23.2, a real Redis and real RQ
workers (``python -m scoring worker`` subprocesses), each test on its own queue name (run keys too)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from redis import Redis
from rq import Queue

from backend.runstore import open_run_store
from core.labelstudio import LabelStudioClient
from core.stores import delete_keys, key
from fakellm.dataset import LABEL_CONFIG, make_tasks
from scoring.cli import build_parser

pytestmark = pytest.mark.labelstudio
REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V = f"queue-v1-{uuid.uuid4().hex[:6]}"   # its own usage-ledger history (the ledger is in the shared Redis)


@pytest.fixture
def env(label_studio, fake_llm, tmp_path):
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"versions": [
        {"id": V, "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label.\n<text>{text}</text>"}]}))
    queue_name = f"test-runs-{uuid.uuid4().hex[:8]}"
    env_vars = {"PROMPTS_FILE": str(prompts), "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake_llm.openai_base_url,
                "REDIS_URL": REDIS_URL, "RQ_QUEUE": queue_name, "DATA_DIR": str(tmp_path / "var"),
                "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
                "PROVIDER_MAX_RETRIES": "0", "RESPONSE_CACHE": "off"}
    yield env_vars
    conn = Redis.from_url(REDIS_URL)
    Queue(queue_name, connection=conn).delete(delete_jobs=True)
    delete_keys(conn, key("runs", queue_name))


def settings_of(env_vars):
    from core.settings import Settings

    return Settings.from_env(env_vars)


def project(label_studio, n: int) -> tuple[int, list[int]]:
    pid = label_studio.create_project(LABEL_CONFIG, title="queued run")
    label_studio.sdk().projects.import_tasks(id=pid, request=[{"data": t["data"]} for t in make_tasks(n)],
                                             commit_to_project=True)
    return pid, sorted(t.id for t in label_studio.sdk().tasks.list(project=pid))


def cli(env_vars, tmp_path, *argv) -> dict:
    out = tmp_path / f"out-{uuid.uuid4().hex[:6]}.json"
    args = build_parser().parse_args([*argv, "--json", str(out)])
    assert args._module.run(args, settings_of(env_vars)) == 0
    return json.loads(out.read_text())


def worker(env_vars, *flags) -> subprocess.Popen:
    """A worker in its own process group (its RQ scheduler runs in a child process)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env_vars}
    return subprocess.Popen([sys.executable, "-m", "scoring", "worker", *flags], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def predictions_per_task(env_vars, pid) -> dict[int, int]:
    tasks, _ = LabelStudioClient(settings_of(env_vars)).pull_project(pid, progress=False)
    return {t["id"]: sum(1 for p in t["predictions"] if p["model_version"] == V) for t in tasks}


def test_two_workers_finish_a_queued_run_and_runs_lists_it(label_studio, fake_llm, env, tmp_path, capsys):
    pid, ids = project(label_studio, 30)
    run = ["run", "--project", str(pid), "--version", V, "--yes", "--chunk", "5", "--no-progress"]
    queued = cli(env, tmp_path, *run, "--detach")
    assert queued["mode"] == "queue" and queued["status"] == "running"
    assert Queue(env["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL)).count == 5  # 25 tasks after the sample
    workers = [worker(env, "--burst"), worker(env, "--burst")]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stdout.read()[-2000:] if w.stdout else ""
    assert predictions_per_task(env, pid) == {i: 1 for i in ids}
    record = open_run_store(settings_of(env)).get(queued["run_id"])
    assert record is not None and record["status"] == "finished"
    assert (record["predicted"], record["provider_calls"], record["chunks_done"]) == (30, 30, 6)
    assert record["usd"] > 0 and abs(record["usd"] - queued["estimate"]["usd"]) / queued["estimate"]["usd"] < 0.2

    listed = cli(env, tmp_path, "runs", "--project", str(pid))
    assert [r["run_id"] for r in listed["runs"]] == [queued["run_id"]]
    assert f"{queued['run_id']}  {V}  run/queue  finished  30/30 tasks (6/6 chunks)" in capsys.readouterr().out

    again = cli(env, tmp_path, *run)   # followed to the end: nothing left to do, no call
    assert (again["status"], again["tasks_selected"], again["predicted"], again["provider_calls"]) == \
        ("finished", 0, 0, 0)
    assert sum(1 for e in fake_llm.requests if e["path"].endswith("/chat/completions")) == 30


def test_a_run_that_is_all_sample_is_written_by_the_command(label_studio, fake_llm, env, tmp_path):
    """Chunk 0 (the estimate's sample) joins the write queue only when chunk jobs follow, which import it:
    a run of no more tasks than the sample is written by the command itself, with no worker at all."""
    pid, ids = project(label_studio, 3)
    done = cli(env, tmp_path, "run", "--project", str(pid), "--version", V, "--yes", "--no-progress", "--detach")
    assert (done["mode"], done["status"], done["predicted"], done["provider_calls"]) == ("queue", "finished", 3, 3)
    assert predictions_per_task(env, pid) == {i: 1 for i in ids}
    assert Queue(env["RQ_QUEUE"], connection=Redis.from_url(REDIS_URL)).count == 0


def test_a_worker_killed_mid_run_loses_nothing_and_a_rerun_writes_no_duplicate(label_studio, fake_llm, env,
                                                                              tmp_path):
    fake_llm.options.latency_ms = 600
    pid, ids = project(label_studio, 40)
    run = ["run", "--project", str(pid), "--version", V, "--yes", "--chunk", "4", "--no-progress",
           "--estimate-sample", "0"]
    first = cli(env, tmp_path, *run, "--detach")
    store = open_run_store(settings_of(env))
    victim = worker(env, "--simple")   # the job runs in this process: SIGKILL kills it mid-chunk
    end = time.time() + 120
    # some written: the first import goes at once, the next one after the write loop's pause (>= 5 s)
    while (store.get(first["run_id"]) or {}).get("predicted", 0) < 4 and time.time() < end:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)   # the worker and its scheduler, as when its machine dies
    victim.wait(timeout=30)
    done_before = predictions_per_task(env, pid)
    assert 0 < sum(done_before.values()) < 40 and max(done_before.values()) == 1

    # the rerun (missing tasks) runs next to the killed run's leftover chunks on two new workers
    result: dict = {}
    follower = threading.Thread(target=lambda: result.update(cli(env, tmp_path, *run)))
    follower.start()
    end = time.time() + 120
    while len(store.runs(pid)) < 2:
        assert time.time() < end, "the rerun was not queued"
        time.sleep(0.2)
    time.sleep(1.0)   # its chunks are enqueued right after its record
    helpers = [worker(env, "--burst"), worker(env, "--burst")]
    follower.join(timeout=300)
    for w in helpers:
        w.wait(timeout=300)
    assert result["status"] == "finished"
    assert predictions_per_task(env, pid) == {i: 1 for i in ids}   # every task once: nothing lost, no duplicate
    assert result["skipped_existing"] >= sum(done_before.values())
