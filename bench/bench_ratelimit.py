"""Two processes sharing one ``rpm`` limit through Redis, against a provider that enforces it.

The stand-in LLM answers 429 (with Retry-After) above ``--rpm`` requests per 60 s (a moving
window).  Two subprocesses each run a Predictor (16 threads) over more tasks than they can
send, with ``limits: {rpm: <--rpm>}`` on the version and ``REDIS_URL`` set, for ``--seconds``.
Prints the achieved rate (answered requests per minute; target within 5 % of ``--rpm``) and
the share of requests answered 429 (target < 1 %).  Needs Redis on ``--redis``.

    .venv/bin/python bench/bench_ratelimit.py [--rpm 600] [--seconds 120] [--latency-ms 100] [--window 60]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis  # noqa: E402

from fakellm import FakeLLM  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = """
import json, logging, sys
logging.disable(logging.WARNING)  # the tasks left at the end are "deadline" by design
from backend.predictor import Predictor
from backend.versions import parse_versions
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG
cfg = json.loads(sys.argv[1])
settings = Settings(openai_api_key="k", openai_base_url=cfg["base_url"], redis_url=cfg["redis"],
                    predict_concurrency=16, predict_deadline=cfg["seconds"], provider_max_retries=5,
                    rate_limit_window_s=cfg["window"])
version = {"id": "v1", "provider": "openai", "model": cfg["model"], "instruction": "Label.\\n<text>{text}</text>",
           "limits": {"rpm": cfg["rpm"]}}
versions = parse_versions({"versions": [version]})
tasks = [{"id": i, "data": {"text": f"review {cfg['tag']}{i}"}} for i in range(cfg["tasks"])]
outcomes = Predictor(settings, versions, cache=None).predict(tasks, LABEL_CONFIG, None)
counts = {}
for o in outcomes:
    counts[o.status] = counts.get(o.status, 0) + 1
print(json.dumps(counts), flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--latency-ms", type=int, default=100, help="the stand-in's answer latency")
    ap.add_argument("--window", type=int, default=60, help="RATE_LIMIT_WINDOW_S of the two processes")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    model = f"bench-ratelimit-{uuid.uuid4().hex[:8]}"   # its own Redis keys, deleted at the end
    tasks = int(args.rpm * args.seconds / 60)           # each process alone could use the whole budget
    with FakeLLM(latency_ms=args.latency_ms, rpm_limit=args.rpm, rate_window_s=60.0) as fake:
        print(f"2 processes x 16 threads, limits {{rpm: {args.rpm}}}, RATE_LIMIT_WINDOW_S={args.window}, "
              f"stand-in: 429 above {args.rpm}/60 s, latency {args.latency_ms} ms, {args.seconds:g} s")
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(
            {"base_url": fake.openai_base_url, "redis": args.redis, "seconds": args.seconds, "window": args.window,
             "model": model, "rpm": args.rpm, "tag": tag, "tasks": tasks})], cwd=ROOT, stdout=subprocess.PIPE,
            text=True) for tag in "AB"]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        t0 = min((r["t"] for r in fake.requests), default=t0)   # measured from the first request
        log = [r for r in fake.requests if r["t"] - t0 < args.seconds]
    r = redis.Redis.from_url(args.redis)
    keys = list(r.scan_iter(match=f"llm-prelabel:limits:*{model}*"))
    if keys:
        r.delete(*keys)
    answered = sum(1 for x in log if x["status"] == 200)
    rejected = sum(1 for x in log if x["status"] == 429)
    span = args.seconds
    print(f"per process (task outcomes): {outs}")
    print(f"requests {len(log)}, answered {answered}, answered 429: {rejected}")
    print(f"achieved rate: {answered / span * 60:.1f} per minute (target {args.rpm} +- 5%: "
          f"{answered / span * 60 / args.rpm - 1:+.1%})")
    print(f"share answered 429: {rejected / max(1, len(log)):.2%} (target < 1%)")
    per10 = [sum(1 for x in log if x["status"] == 200 and k * 10 <= x["t"] - t0 < (k + 1) * 10)
             for k in range(int(span // 10))]
    print(f"answered per 10 s: {per10}")


if __name__ == "__main__":
    main()
