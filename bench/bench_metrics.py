"""Benchmark of the metrics engine: score 100,000 synthetic tasks with three controls
(single choice, spans, textarea) through ``scoring.engine.evaluate`` and print the
wall time and peak memory.  Target (issue 4): under 10 s and under 1 GB.  Then the same with
the 95% intervals (issue 10: overall, per control, per-label P/R/F1, kappa, alpha): they must
add under 3 s.

    .venv/bin/python bench/bench_metrics.py [--tasks N] [--seed S]
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring import engine  # noqa: E402
from scoring.engine import INTERVALS, evaluate  # noqa: E402
from scoring.uncertainty import add_intervals  # noqa: E402

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Labels name="ner" toName="text">
    <Label value="PER"/><Label value="ORG"/><Label value="LOC"/>
  </Labels>
  <TextArea name="summary" toName="text"/>
</View>"""

WORDS = ("the quick brown fox jumps over lazy dog model label studio prompt version score agreement "
         "span text summary review product service great poor fine ok").split()


def _summary(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))


def _perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    for _ in range(rng.randint(0, 3)):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


def _result(choice: str, spans: list, summary: str) -> list:
    out = [{"id": "c", "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]
    for k, (label, s, e) in enumerate(spans):
        out.append({"id": f"s{k}", "from_name": "ner", "to_name": "text", "type": "labels",
                    "value": {"start": s, "end": e, "text": "x" * (e - s), "labels": [label]}})
    out.append({"id": "t", "from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": [summary]}})
    return out


def make_tasks(n: int, seed: int = 0) -> list[dict]:
    """n tasks, each with a ground-truth annotation and a prediction of version "v1"
    that agrees most of the time (same choice ~80%, shifted spans, a few words changed)."""
    rng = random.Random(seed)
    labels = ("Positive", "Negative", "Neutral")
    ents = ("PER", "ORG", "LOC")
    tasks = []
    for i in range(n):
        ref_choice = rng.choice(labels)
        pred_choice = ref_choice if rng.random() < 0.8 else rng.choice(labels)
        ref_spans, pos = [], 0
        for _ in range(rng.randint(0, 4)):
            pos += rng.randint(0, 20)
            length = rng.randint(3, 15)
            ref_spans.append((rng.choice(ents), pos, pos + length))
            pos += length
        pred_spans = [(lab if rng.random() < 0.9 else rng.choice(ents),
                       max(0, s + rng.randint(-2, 2)), e + rng.randint(-2, 2))
                      for lab, s, e in ref_spans if rng.random() < 0.9]
        pred_spans = [(lab, s, max(s, e)) for lab, s, e in pred_spans]
        if rng.random() < 0.2:
            pred_spans.append((rng.choice(ents), pos + 5, pos + 12))
        summary = _summary(rng)
        tasks.append({
            "id": i + 1,
            "data": {"text": f"task {i}"},
            "annotations": [{"id": 10 * i + 1, "ground_truth": True,
                             "result": _result(ref_choice, ref_spans, summary)}],
            "predictions": [{"id": 10 * i + 2, "model_version": "v1", "score": 0.5,
                             "result": _result(pred_choice, pred_spans, _perturb(rng, summary))}],
        })
    return tasks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    tasks = make_tasks(a.tasks, a.seed)
    t1 = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = evaluate(tasks, LABEL_CONFIG, "v1", intervals=None)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(f"tasks:            {a.tasks:,} (3 controls: single choice, spans, textarea)")
    print(f"generate tasks:   {t1 - t0:.2f} s (not part of the figure)")
    print(f"evaluate:         {t2 - t1:.2f} s  (target < 10 s)")
    print(f"peak RSS:         {peak:.0f} MiB (after generating: {rss_before:.0f} MiB; target < 1024 MiB)")
    print(f"score:            {report['score']:.4f}; kappa {report['kappa']['sentiment']:.4f}; "
          f"alpha {report['alpha']['sentiment']:.4f}; compared {report['n_compared']:,}")
    del report
    spent = []

    def timed(*args, **kwargs):  # the interval step alone: the difference of two runs is mostly noise
        start = time.perf_counter()
        out = add_intervals(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    engine.add_intervals = timed
    t3 = time.perf_counter()
    ci = evaluate(tasks, LABEL_CONFIG, "v1", intervals=INTERVALS)
    t4 = time.perf_counter()
    added = spent[0]
    peak_ci = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"with intervals:   {t4 - t3:.2f} s, of which the intervals {added:.2f} s (target < 3 s); "
          f"peak RSS {peak_ci:.0f} MiB")
    print(f"intervals:        score [{ci['score_ci'][0]:.4f}, {ci['score_ci'][1]:.4f}] ({ci['ci_method']}); "
          f"kappa [{ci['kappa_ci']['sentiment'][0]:.4f}, {ci['kappa_ci']['sentiment'][1]:.4f}]")
    ok = (t2 - t1) < 10 and peak_ci < 1024 and added < 3
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
