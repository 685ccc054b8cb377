"""How long one "Retrieve Predictions" batch takes through the backend.

Label Studio sends every selected task in one ``/predict`` call and waits 100 s.
This sends 1,100 tasks (the largest batch measured from Label Studio) to the
backend over HTTP; the stand-in LLM server answers each call after a fixed
latency, like a hosted model would.  The response cache is off, so every task is
a model call (``make_tasks`` repeats texts, which the cache would answer without
one).  Prints wall time, throughput, how many tasks the deadline left for the
next run, and the backend's overhead per task (wall and CPU of this process,
which serves the backend; the stand-in runs in its own process, so its CPU is
not counted), for a few concurrency settings.

    .venv/bin/python bench/bench_predict.py [--tasks 1100] [--latency-ms 600] [--stand-in thread]
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402
import yaml  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.versions import load_versions  # noqa: E402
from core.settings import Settings  # noqa: E402
from fakellm import FakeLLM  # noqa: E402
from fakellm.__main__ import keep_alive_server  # noqa: E402
from fakellm.dataset import LABEL_CONFIG, make_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1100)
    ap.add_argument("--latency-ms", type=int, default=600)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[8, 16, 32, 64])
    ap.add_argument("--stand-in", choices=["process", "thread"], default="process",
                    help="run the stand-in LLM in its own process (default) or in this one (its CPU counted)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tasks = make_tasks(args.tasks)
    print(f"{args.tasks} tasks in one /predict, stand-in LLM latency {args.latency_ms} ms per call")
    print(f"{'concurrency':>11}  {'wall s':>7}  {'tasks/s':>7}  {'labelled':>8}  {'left for next run':>17}  "
          f"{'ms/task':>7}  {'CPU ms/task':>11}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp, stand_in(args) as fake:
        prompts = os.path.join(tmp, "prompts.yaml")
        with open(prompts, "w") as fh:
            yaml.safe_dump({"versions": [{"id": "bench-v1", "provider": "openai", "model": "gpt-4o-mini",
                                          "instruction": "Label.\n<text>{text}</text>"}]}, fh)
        for conc in args.concurrency:
            settings = Settings(prompts_file=prompts, openai_api_key="bench", openai_base_url=fake.openai_base_url,
                                data_dir=os.path.join(tmp, f"var{conc}"), predict_concurrency=conc, predict_deadline=90,
                                response_cache=False)
            server = make_server("127.0.0.1", 0, create_app(settings, load_versions(prompts)), threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=120) as http:
                http.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG})
                body = {"tasks": tasks[:20], "project": "1.1", "label_config": LABEL_CONFIG}
                http.post("/predict", json=body)   # warm up: imports, clients, SQLite files
                t0, c0 = time.perf_counter(), time.process_time()
                results = http.post("/predict", json=dict(body, tasks=tasks)).json()["results"]
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            server.shutdown()
            done = sum(1 for r in results if r)
            print(f"{conc:>11}  {wall:>7.1f}  {done / wall:>7.1f}  {done:>8}  {len(results) - done:>17}  "
                  f"{wall / len(tasks) * 1000:>7.2f}  {cpu / len(tasks) * 1000:>11.2f}")


@contextlib.contextmanager
def stand_in(args):
    """The stand-in LLM: in this process (``--stand-in thread``) or in its own (``python -m fakellm``)."""
    if args.stand_in == "thread":
        with FakeLLM(latency_ms=args.latency_ms) as fake:
            yield fake
        return
    # gunicorn's threaded worker keeps connections alive, as the hosted APIs do (``python -m fakellm``,
    # on werkzeug's development server, closes each one: a new connection per call)
    with keep_alive_server(args.latency_ms) as url:
        yield types.SimpleNamespace(openai_base_url=f"{url}/v1")


if __name__ == "__main__":
    main()
