"""How long one "Retrieve Predictions" batch takes through the backend.

Label Studio sends every selected task in one ``/predict`` call and waits 100 s.
This sends 1,100 tasks (the largest batch measured from Label Studio) to the
backend over HTTP; the stand-in LLM server answers each call after a fixed
latency, like a hosted model would.  Prints wall time, throughput and how many
tasks the deadline left for the next run, for a few concurrency settings.

    .venv/bin/python bench/bench_predict.py [--tasks 1100] [--latency-ms 600]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx  # noqa: E402
import yaml  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.versions import load_versions  # noqa: E402
from core.settings import Settings  # noqa: E402
from fakellm import FakeLLM  # noqa: E402
from fakellm.dataset import LABEL_CONFIG, make_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1100)
    ap.add_argument("--latency-ms", type=int, default=600)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[8, 16, 32, 64])
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tasks = make_tasks(args.tasks)
    print(f"{args.tasks} tasks in one /predict, stand-in LLM latency {args.latency_ms} ms per call")
    print(f"{'concurrency':>11}  {'wall s':>7}  {'tasks/s':>7}  {'labelled':>8}  {'left for next run':>17}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp, FakeLLM(latency_ms=args.latency_ms) as fake:
        prompts = os.path.join(tmp, "prompts.yaml")
        with open(prompts, "w") as fh:
            yaml.safe_dump({"versions": [{"id": "bench-v1", "provider": "openai", "model": "gpt-4o-mini",
                                          "instruction": "Label.\n<text>{text}</text>"}]}, fh)
        for conc in args.concurrency:
            settings = Settings(prompts_file=prompts, openai_api_key="bench", openai_base_url=fake.openai_base_url,
                                data_dir=os.path.join(tmp, f"var{conc}"), predict_concurrency=conc, predict_deadline=90)
            server = make_server("127.0.0.1", 0, create_app(settings, load_versions(prompts)), threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=120) as http:
                http.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG})
                t0 = time.perf_counter()
                body = {"tasks": tasks, "project": "1.1", "label_config": LABEL_CONFIG}
                results = http.post("/predict", json=body).json()["results"]
                wall = time.perf_counter() - t0
            server.shutdown()
            done = sum(1 for r in results if r)
            print(f"{conc:>11}  {wall:>7.1f}  {done / wall:>7.1f}  {done:>8}  {len(results) - done:>17}")


if __name__ == "__main__":
    main()
