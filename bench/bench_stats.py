"""Benchmark of the confidence intervals (issue 10): time the intervals a scoring run of
100,000 tasks would print -- the overall score, 3 per-control scores, per-label precision /
recall / F1 for 5 labels, and one Cohen's kappa -- and print the seconds (target: under 3 s
in total).

    .venv/bin/python bench/bench_stats.py [--tasks N] [--seed S]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring.stats import kappa_ci, mean_ci, prf_ci  # noqa: E402

LABELS = ("PER", "ORG", "LOC", "DATE", "MISC")


def make_scores(n: int, seed: int) -> dict:
    """Synthetic per-task results shaped like the engine's: a 0/1 exact-match control, a span
    F1 and a text similarity in [0, 1], (tp, fp, fn) per label, and a pair of choice labels."""
    rng = np.random.default_rng(seed)
    choice_ok = (rng.random(n) < 0.82).astype(float)
    spans_f1 = rng.beta(6, 2, n)
    text_sim = rng.beta(8, 3, n)
    counts = {}
    for lab in LABELS:
        gold = rng.poisson(1.2, n)
        tp = rng.binomial(gold, 0.8)
        counts[lab] = np.column_stack([tp, rng.poisson(0.3, n), gold - tp])
    ref = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.8, ref, rng.integers(0, 3, n))
    labels = np.array(["Positive", "Negative", "Neutral"])
    return {"overall": (choice_ok + spans_f1 + text_sim) / 3, "controls": [choice_ok, spans_f1, text_sim],
            "counts": counts, "kappa": (list(labels[ref]), list(labels[pred]))}


def _timed(name: str, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    result = fn()
    took = time.perf_counter() - start
    shown = result if not isinstance(result, dict) else {k: v["f1"] for k, v in list(result.items())[:2]}
    print(f"  {name:<34} {took:7.3f} s   {shown}")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    data = make_scores(args.tasks, args.seed)
    print(f"intervals for {args.tasks:,} tasks (95%, seed 0)")
    total = _timed("overall score (mean_ci)", lambda: mean_ci(data["overall"]))
    for i, scores in enumerate(data["controls"]):
        total += _timed(f"control {i + 1} (mean_ci)", partial(mean_ci, scores))
    total += _timed(f"per-label P/R/F1, {len(LABELS)} labels (prf_ci)", lambda: prf_ci(data["counts"]))
    total += _timed("Cohen's kappa (kappa_ci)", lambda: kappa_ci(*data["kappa"]))
    print(f"total {total:.3f} s (target < 3 s)")
    return 0 if total < 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
