"""Which tasks to annotate next, and how to use them without bias.

To narrow "is B better than A?", annotate tasks where A and B *disagree*: where both
versions give the same answer their scores against any ground truth are equal, so the
per-task difference is exactly 0 and annotating the task teaches nothing about the
difference.  ``suggest_tasks`` therefore samples each unannotated task independently
(Poisson sampling) with probability

    pi_i = min(1, c * (disagreement_i + floor))

with c set so the expected number of picks is the budget.  The ``floor`` keeps every task's
probability positive, which is what makes the weighted estimate unbiased even where the
disagreement signal is wrong.  Known probabilities allow the inverse-probability
(Horvitz-Thompson) estimate ``ht_mean``:

    estimate = offset + (1 / N) * sum over picked tasks of residual_i / pi_i

where ``residual_i`` is the annotated value minus what a proxy predicted (use 0 and
offset 0 without a proxy; with a proxy, offset = the proxy's mean over all N tasks: this is
the active-inference estimator of Zrnic & Candes 2024).  Its variance under Poisson sampling
is (1 / N^2) * sum_i (1 - pi_i) / pi_i * residual_i^2, estimated from the picked tasks by
weighting each by 1 / pi_i once more.  The target is the mean over these N tasks.
Assumptions: tasks are picked only by this random draw (annotate all picked tasks, or drop
them at random), and N * budget is large enough for the normal approximation.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scoring.stats._common import Interval, z_value


def inclusion_probabilities(weights: Sequence[float] | np.ndarray, budget: float) -> np.ndarray:
    """Probabilities proportional to ``weights``, capped at 1, summing to ``budget``
    (the tasks that hit the cap are taken for sure and the rest rescaled).

    >>> inclusion_probabilities([1, 1, 2, 8], 2).tolist()
    [0.25, 0.25, 0.5, 1.0]
    """
    w = np.asarray(weights, dtype=float)
    if (w <= 0).any():
        raise ValueError("inclusion weights must be positive")
    if budget >= w.size:
        return np.ones(w.size)
    capped = np.zeros(w.size, dtype=bool)
    while True:
        scale = (budget - capped.sum()) / w[~capped].sum()
        newly = ~capped & (w * scale >= 1)
        if not newly.any():
            return np.where(capped, 1.0, w * scale)
        capped |= newly


@dataclass(frozen=True)
class Suggestion:
    """Tasks picked for annotation, with the probability each had of being picked."""
    task_ids: list[Hashable]
    inclusion: list[float]


def suggest_tasks(disagreement: Mapping[Hashable, float], budget: float, floor: float = 0.05,
                  seed: int = 0) -> Suggestion:
    """Pick about ``budget`` unannotated tasks, favouring those where A and B disagree.

    ``disagreement[task]`` in [0, 1] (e.g. 1 - agreement between A's and B's predictions).
    Each task is picked independently with ``pi = min(1, c * (disagreement + floor))``; the
    number picked is random with mean ``budget``.  Keep the returned probabilities: pass them
    to ``ht_mean`` so estimates stay unbiased.

    >>> s = suggest_tasks({"t1": 0.0, "t2": 0.0, "t3": 1.0, "t4": 0.5, "t5": 0.0}, budget=2, floor=0.1)
    >>> s.task_ids, [round(p, 3) for p in s.inclusion]
    (['t3', 't4'], [1.0, 0.667])
    """
    if floor <= 0:
        raise ValueError("floor must be positive: every task needs a chance to be picked")
    ids = list(disagreement)
    if not ids or budget <= 0:
        return Suggestion([], [])
    d = np.clip(np.array([disagreement[t] for t in ids], dtype=float), 0.0, 1.0)
    pi = inclusion_probabilities(d + floor, budget)
    picked = np.random.default_rng(seed).random(len(ids)) < pi
    return Suggestion([t for t, p in zip(ids, picked, strict=True) if p], [float(v) for v in pi[picked]])


@dataclass(frozen=True)
class HTEstimate:
    """Inverse-probability estimate of a mean over ``n_total`` tasks from ``n_labeled`` picks."""
    score: float | None
    ci: Interval
    n_labeled: int
    n_total: int


def ht_mean(residuals: Sequence[float], inclusion: Sequence[float], n_total: int, level: float = 0.95,
            offset: float = 0.0) -> HTEstimate:
    """Horvitz-Thompson mean over ``n_total`` tasks from Poisson-sampled picks (see the module
    docstring): offset + sum(residual / pi) / N, normal interval.  ``ci`` is ``None`` with
    fewer than 2 picks or zero estimated variance.

    >>> r = ht_mean([1.0, -1.0, 1.0, 0.0], [1.0, 0.5, 0.25, 0.25], n_total=10)
    >>> round(r.score, 3), [round(v, 3) for v in r.ci]             # (1 - 2 + 4 + 0) / 10
    (0.3, [-0.433, 1.033])
    """
    r, pi = np.asarray(residuals, dtype=float), np.asarray(inclusion, dtype=float)
    if r.size != pi.size or ((pi <= 0) | (pi > 1)).any() or n_total < r.size:
        raise ValueError("one inclusion probability in (0, 1] per residual, and n_total >= picks")
    if r.size == 0:
        return HTEstimate(None, None, 0, n_total)
    score = offset + float((r / pi).sum()) / n_total
    se = math.sqrt(float(((1 - pi) / pi ** 2 * r ** 2).sum())) / n_total
    ci = (score - z_value(level) * se, score + z_value(level) * se) if r.size > 1 and se > 0 else None
    return HTEstimate(score, ci, int(r.size), n_total)
