"""Runs at scale, against a real Label Studio 1.23.2, Redis and the stand-in LLM at a fixed latency.

    LS_BIN=.../label-studio .venv/bin/python bench/bench_runs.py [--tasks 10000] [--predict-tasks 1000]

Prints, in one run:

1. ``python -m scoring run`` of ``--tasks`` tasks in queue mode with ``--workers`` RQ workers
   (``python -m scoring worker --simple``) at ``--latency`` s a call: tasks/s and its ratio to the
   ideal (workers x PREDICT_CONCURRENCY / latency); the plan's estimated cost against the actual;
2. the same run again after deleting the version's predictions: provider calls, USD, written
   (the response cache answers every task);
3. Label Studio's "Retrieve Predictions" on ``--predict-tasks`` tasks at ``--predict-latency`` s
   (one ``/predict`` with them all; ``PREDICT_DEADLINE`` ``--predict-deadline``): the reply time,
   the tasks handed to the overflow run, and afterwards the predictions per task in Label Studio
   (lost = tasks without one, duplicated = tasks with more than one);
4. backend overhead per task at zero latency (``--overhead-tasks`` in one ``/predict``, the stand-in
   in its own process) and a sequential baseline: one task at a time, a new SDK client per call.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import httpx  # noqa: E402
import yaml  # noqa: E402
from bench_predict import stand_in  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.runwork import RUN_CHUNK  # noqa: E402
from backend.versions import load_versions  # noqa: E402
from core.labelstudio import LabelStudioClient  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.stores import delete_keys, key  # noqa: E402
from fakellm.dataset import LABEL_CONFIG, make_tasks  # noqa: E402
from scoring.cli import build_parser  # noqa: E402
from tests.lsharness import start_server  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_URL = "redis://127.0.0.1:6379/0"
LS_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


class Stand_in:
    """The stand-in LLM in its own process (its CPU is not the backend's): ``bench_predict.stand_in``."""

    def __init__(self, latency_s: float):
        self._cm = stand_in(types.SimpleNamespace(stand_in="process", latency_ms=int(latency_s * 1000)))
        self.url = self._cm.__enter__().openai_base_url

    def stop(self) -> None:
        self._cm.__exit__(None, None, None)


def env_of(settings: Settings, prompts: str, llm_url: str) -> dict:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PROMPTS_FILE": prompts,
            "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": llm_url, "REDIS_URL": REDIS_URL,
            "RQ_QUEUE": settings.queue_name, "DATA_DIR": settings.data_dir,
            "LABEL_STUDIO_URL": settings.label_studio_url,
            "LABEL_STUDIO_API_KEY": settings.label_studio_api_key, "LOG_LEVEL": "WARNING",
            "PREDICT_CONCURRENCY": str(settings.predict_concurrency)}


def make_project(ls, n: int, title: str) -> int:
    """A project of ``n`` tasks, each text its own (``make_tasks`` repeats texts, which the response
    cache would answer: the ratio to the ideal must count one model call a task)."""
    pid = ls.create_project(LABEL_CONFIG, title=title)
    data = [{"data": dict(t["data"], text=f"{t['data']['text']} (#{i})")} for i, t in enumerate(make_tasks(n))]
    for i in range(0, n, 2000):
        ls.sdk().projects.import_tasks(id=pid, request=data[i:i + 2000], commit_to_project=True)
    return pid


def queued_run(settings: Settings, env: dict, pid: int, version: str, args) -> tuple[dict, float, float]:
    """One queued ``scoring run`` and its workers; returns (the --json document, wall seconds of the whole
    command, seconds from the chunks' enqueueing to the end)."""
    from backend.runstore import open_run_store

    out = os.path.join(settings.data_dir, f"run-{uuid.uuid4().hex[:6]}.json")
    argv = ["run", "--project", str(pid), "--version", version, "--yes", "--no-progress", "--chunk", str(args.chunk),
            "--json", out]
    workers = [subprocess.Popen([sys.executable, "-m", "scoring", "worker", "--simple"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(args.workers)]
    try:
        t0 = time.perf_counter()
        parsed = build_parser().parse_args(argv)
        parsed._module.run(parsed, settings)
        wall, end = time.perf_counter() - t0, time.time()
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)
    with open(out) as fh:
        doc = json.load(fh)
    record = open_run_store(settings).get(doc["run_id"]) or {}
    return doc, wall, end - record.get("created", end)


def per_task(settings: Settings, pid: int, version: str) -> list[int]:
    tasks, _ = LabelStudioClient(settings).pull_project(pid, progress=False)
    return [sum(1 for p in t["predictions"] if p["model_version"] == version) for t in tasks]


def phase_runs(ls, settings: Settings, env: dict, version: str, args) -> None:
    pid = make_project(ls, args.tasks, "bench runs")
    first, wall, run_wall = queued_run(settings, env, pid, version, args)
    ideal = args.workers * settings.predict_concurrency / args.latency
    rate, run_rate = first["predicted"] / wall, first["predicted"] / run_wall
    e = first["estimate"]["usd"]
    print(f"1. queued run: {first['predicted']}/{args.tasks} tasks; whole command (export, plan, sample, queue, "
          f"follow) {wall:.1f} s = {rate:.1f} tasks/s; from queueing to done {run_wall:.1f} s = {run_rate:.1f} "
          f"tasks/s; ideal {args.workers} workers x {settings.predict_concurrency} / {args.latency:g} s = "
          f"{ideal:.0f} tasks/s; ratio {rate / ideal:.2f} (whole) / {run_rate / ideal:.2f} (queued part); "
          f"{first['provider_calls']} provider calls, {first['cached']} cache hits")
    from backend.runstore import open_run_store

    rec = open_run_store(settings).get(first["run_id"]) or {}
    print(f"   in the chunk jobs: {rec.get('predict_s', 0):.1f} s predicting, summed over {rec.get('chunks', 0)} "
          f"chunks ({rec.get('predict_s', 0) / max(1, rec.get('chunks', 1) - 1):.1f} s a chunk of {args.chunk}; "
          f"ideal {args.chunk / settings.predict_concurrency * args.latency:.2f} s); the write loops import meanwhile")
    print(f"   cost: estimated ${e:.4f}, actual ${first['usd']:.4f} ({(first['usd'] - e) / e:+.1%}); "
          f"{first['provider_calls']} provider calls, failed {first['failed'] or 'none'}")
    LabelStudioClient(settings).delete_model_version(pid, version)
    again, wall2, _ = queued_run(settings, env, pid, version, args)
    counts = per_task(settings, pid, version)
    print(f"2. again after deleting the predictions: {again['provider_calls']} provider calls, "
          f"${again['usd'] or 0:.4f},"
          f" {again['cached']} cache hits, {sum(1 for c in counts if c == 1)}/{args.tasks} written once, "
          f"{sum(1 for c in counts if c > 1)} duplicated, {wall2:.1f} s")


def phase_predict(ls, settings: Settings, env: dict, prompts: str, args) -> None:
    llm = Stand_in(args.predict_latency)
    s = settings.replace(openai_base_url=llm.url, predict_deadline=args.predict_deadline)
    version = load_versions(prompts).default
    app = create_app(s, load_versions(prompts))
    replies: list[float] = []   # how long each /predict took in the backend (Label Studio then stores the results)

    def timed(environ, start_response):
        t = time.perf_counter()
        try:
            return list(app(environ, start_response))
        finally:
            if environ.get("PATH_INFO") == "/predict":
                replies.append(time.perf_counter() - t)

    server = make_server("127.0.0.1", 0, timed, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pid = make_project(ls, args.predict_tasks, "bench predict")
        ls.sdk().ml.create(project=pid, url=f"http://127.0.0.1:{server.server_port}", title="LLM",
                           is_interactive=False)
        t0 = time.perf_counter()
        ls.sdk().actions.create(id="retrieve_tasks_predictions", project=pid,
                                selected_items={"all": True, "excluded": []},
                                request_options={"timeout": 300})
        reply = time.perf_counter() - t0
        runs = [r for r in Queue(s.queue_name, connection=Redis.from_url(REDIS_URL)).job_ids]
        workers = [subprocess.run([sys.executable, "-m", "scoring", "worker", "--burst", "--simple"], cwd=REPO,
                                  env=dict(env, OPENAI_BASE_URL=llm.url), capture_output=True, timeout=1800)
                   for _ in range(1)]
        counts = per_task(settings, pid, version)
        print(f"3. Retrieve Predictions of {args.predict_tasks} tasks at {args.predict_latency:g} s "
              f"(PREDICT_DEADLINE {args.predict_deadline:g}): the backend replied in "
              f"{', '.join(f'{r:.1f}' for r in replies)} s, Label Studio's action (reply + storing) took {reply:.1f} s;"
              f" overflow chunk jobs "
              f"{len(runs)}; afterwards {sum(1 for c in counts if c == 1)} with one prediction, "
              f"{sum(1 for c in counts if c == 0)} lost, {sum(1 for c in counts if c > 1)} duplicated "
              f"(worker exit {[w.returncode for w in workers]})")
    finally:
        server.shutdown()
        llm.stop()


def phase_overhead(settings: Settings, prompts: str, args) -> None:
    import openai

    llm = Stand_in(0.0)
    s = settings.replace(openai_base_url=llm.url, redis_url=None, label_studio_url=None,
                         data_dir=os.path.join(settings.data_dir, "overhead"), response_cache=False)
    tasks = make_tasks(args.overhead_tasks)
    server = make_server("127.0.0.1", 0, create_app(s, load_versions(prompts)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=300) as http:
            http.post("/predict", json={"tasks": tasks[:20], "project": "1.1", "label_config": LABEL_CONFIG})
            t0 = time.perf_counter()
            results = http.post("/predict", json={"tasks": tasks, "project": "1.1",
                                                  "label_config": LABEL_CONFIG}).json()["results"]
            per = (time.perf_counter() - t0) / len(tasks) * 1000
        n_base = min(200, len(tasks))
        t0 = time.perf_counter()
        for t in tasks[:n_base]:
            client = openai.OpenAI(api_key="bench", base_url=llm.url, max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[
                {"role": "user", "content": f"Label.\n<text>{t['data']['text']}</text>"}])
            client.close()
        base = (time.perf_counter() - t0) / n_base * 1000
        print(f"4. zero latency: backend {per:.2f} ms/task over {len(tasks)} tasks in one /predict "
              f"({sum(1 for r in results if r)} labelled); sequential baseline (a new client per call) "
              f"{base:.2f} ms/task; ratio {per / base:.2f}")
    finally:
        server.shutdown()
        llm.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=RUN_CHUNK)
    ap.add_argument("--predict-tasks", type=int, default=1000)
    ap.add_argument("--predict-latency", type=float, default=1.0)
    ap.add_argument("--predict-deadline", type=float, default=90.0)
    ap.add_argument("--overhead-tasks", type=int, default=500)
    ap.add_argument("--skip", nargs="*", default=[], choices=["runs", "predict", "overhead"])
    ap.add_argument("--ls-import-flag", action="store_true",
                    help=f"start Label Studio with {LS_IMPORT_FLAG}=true (each prediction import recounts only "
                         "its own tasks, not the whole project: see README, 'Runs at scale')")
    args = ap.parse_args()
    if args.ls_import_flag:   # read by the Label Studio process this script starts, not by this project
        os.environ[LS_IMPORT_FLAG] = "true"
    print(f"Label Studio {'with' if args.ls_import_flag else 'without'} {LS_IMPORT_FLAG}")
    logging.basicConfig(level=logging.ERROR)
    for name in ("werkzeug", "httpx", "backend", "scoring"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        version = f"bench-{uuid.uuid4().hex[:6]}"
        prompts = os.path.join(tmp, "prompts.yaml")
        with open(prompts, "w") as fh:
            yaml.safe_dump({"versions": [{"id": version, "provider": "openai", "model": "gpt-4o-mini",
                                          "instruction": f"Label ({version}).\n<text>{{text}}</text>"}]}, fh)
        queue = f"bench-runs-{uuid.uuid4().hex[:6]}"
        llm = Stand_in(args.latency)
        ls = start_server(os.path.join(tmp, "ls"))
        settings = Settings(prompts_file=prompts, openai_api_key="bench", openai_base_url=llm.url, redis_url=REDIS_URL,
                            queue_name=queue, data_dir=os.path.join(tmp, "var"), label_studio_url=ls.url,
                            label_studio_api_key=ls.token, predict_concurrency=args.concurrency)
        env = env_of(settings, prompts, llm.url)
        try:
            if "runs" not in args.skip:
                phase_runs(ls, settings, env, version, args)
            if "predict" not in args.skip:
                phase_predict(ls, settings, env, prompts, args)
            if "overhead" not in args.skip:
                phase_overhead(settings, prompts, args)
        finally:
            ls.stop()
            llm.stop()
            conn = Redis.from_url(REDIS_URL)
            Queue(queue, connection=conn).delete(delete_jobs=True)
            delete_keys(conn, key("runs", queue))


if __name__ == "__main__":
    main()
