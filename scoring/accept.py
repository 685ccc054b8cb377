"""Selective auto-accept: turn the confident predictions into annotations, with a guarantee on ground truth.

**The rule** (:func:`choose_threshold`).  On the ground-truth tasks (confidence c_i, right r_i), a threshold
t accepts the tasks with c_i >= t; its accuracy is estimated by the share right among them and bounded
below by the one-sided 95% Clopper-Pearson bound.  The candidate thresholds (the distinct confidences,
highest first, see :func:`candidates`) are tested in that fixed order -- "the accuracy above t is
below the target" is rejected when the lower bound reaches the target -- and the scan **stops at the
first failure**; the threshold chosen is the last one that passed.  This is fixed-sequence testing:
each hypothesis is tested at the full 5% level and no later one is looked at once one fails, so the
chance that *any* accepted threshold's accuracy is really below the target stays at most 5%
(family-wise), with no Bonferroni penalty.  Scanning every threshold and keeping the lowest that
passes would not keep that guarantee.

When no threshold passes, :func:`needed_ground_truth` says how many more ground-truth tasks would let
the best one pass at the accuracy observed there (or that none would: when even the most confident
tasks are not accurate enough).

>>> conf = [0.99] * 200 + [0.5] * 100
>>> right = [1] * 199 + [0] + [1] * 60 + [0] * 40
>>> d = choose_threshold(conf, right, 0.95)
>>> d.threshold, d.n, round(d.estimate, 3), round(d.lower, 3)
(0.99, 200, 0.995, 0.977)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta

ALPHA = 0.05
STEP = 0.02   # the scan tests a new threshold each time 2% more of the ground-truth tasks are accepted
MARK = "llm-prelabel accept"   # region meta["accepted_by"] of machine-accepted annotations


@dataclass
class Decision:
    """The lowest threshold that passed (None: none did) and its ground-truth figures."""

    threshold: float | None
    n: int = 0              # ground-truth tasks at or above the threshold
    right: int = 0
    estimate: float | None = None
    lower: float | None = None
    tested: int = 0         # thresholds tested (the scan stops at the first failure)

    @property
    def ok(self) -> bool:
        return self.threshold is not None


def cp_lower(k: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion k / n.

    >>> round(cp_lower(100, 100), 4), cp_lower(0, 10)
    (0.9705, 0.0)
    """
    if n == 0 or k == 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def _levels(conf: ArrayLike, right: ArrayLike) -> list[tuple[float, int, int]]:
    """(threshold, tasks at or above it, right among them) for each distinct confidence, highest first."""
    c, r = np.asarray(conf, float), np.asarray(right, float)
    order = np.argsort(-c, kind="stable")
    c, r = c[order], r[order]
    out, n, k = [], 0, 0
    for i in range(len(c)):
        n, k = n + 1, k + int(r[i])
        if i + 1 == len(c) or c[i + 1] < c[i]:
            out.append((float(c[i]), n, k))
    return out


def min_tasks(target: float, alpha: float = ALPHA) -> int:
    """The fewest tasks that can show ``target`` at all (all of them right): ``alpha ** (1 / n) >= target``.

    >>> min_tasks(0.98), min_tasks(0.95)
    (149, 59)
    """
    return int(math.ceil(math.log(alpha) / math.log(target) - 1e-9))


def candidates(conf: ArrayLike, right: ArrayLike, target: float, alpha: float = ALPHA) -> list[tuple]:
    """The thresholds tested, in order: the distinct confidences, highest first, from the first one that
    accepts :func:`min_tasks` ground-truth tasks on (above it nothing can pass), then one each time
    :data:`STEP` more of the ground-truth tasks are accepted (so one early error does not end the scan
    a task later), and the lowest."""
    levels = _levels(conf, right)
    step = max(1, round(STEP * np.size(conf)))
    out: list[tuple] = []
    for level in levels:
        if level[1] >= min_tasks(target, alpha) and (not out or level[1] - out[-1][1] >= step):
            out.append(level)
    if levels and levels[-1][1] >= min_tasks(target, alpha) and (not out or out[-1] != levels[-1]):
        out.append(levels[-1])
    return out


def choose_threshold(conf: ArrayLike, right: ArrayLike, target: float,
                     alpha: float = ALPHA) -> Decision:
    """The fixed-sequence scan of the module doc over :func:`candidates`."""
    best = Decision(None)
    for i, (t, n, k) in enumerate(candidates(conf, right, target, alpha), 1):
        lower = cp_lower(k, n, alpha)
        if lower < target:
            best.tested = i
            break
        best = Decision(t, n, k, k / n, lower, i)
    return best


def needed_ground_truth(conf: ArrayLike, right: ArrayLike, target: float,
                        alpha: float = ALPHA) -> int | None:
    """More ground-truth tasks needed so that some threshold could pass, at the accuracy seen; None: never.

    Picks the threshold whose observed accuracy is highest (ties: most tasks), finds the smallest m with
    ``cp_lower(round(p m), m) >= target`` and scales it by that threshold's share of ground-truth tasks.

    >>> needed_ground_truth([0.9] * 50, [1] * 50, 0.98)
    99
    """
    levels = _levels(conf, right)
    if not levels:
        return int(math.ceil(math.log(alpha) / math.log(target)))
    t, n, k = max(levels, key=lambda x: (x[2] / x[1], x[1]))
    p = k / n
    if p <= target:
        return None
    def passes(m: int) -> bool:
        return cp_lower(math.floor(p * m), m, alpha) >= target

    lo, hi = n, 2 * n
    while not passes(hi):
        lo, hi = hi, 2 * hi
        if hi > 10_000_000:
            return None
    while hi - lo > 1:  # the smallest passing size (bisection)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    m = hi
    share = n / np.size(conf)
    return max(0, int(math.ceil(m / share)) - int(np.size(conf)))


def accepted_annotation(task_id, prediction: dict, version: str, decision: Decision) -> dict:
    """The annotation to create from a prediction: its regions, each marked in ``meta`` as machine-accepted."""
    mark = {"accepted_by": MARK, "version": version, "threshold": decision.threshold,
            "estimate": round(decision.estimate or 0.0, 4), "lower_bound": round(decision.lower or 0.0, 4)}
    result = [dict(r, meta={**(r.get("meta") or {}), **mark}) for r in prediction.get("result") or ()]
    return {"task": task_id, "result": result, "parent_prediction": prediction.get("id")}


def is_accepted_by(annotation: dict, version: str) -> bool:
    """Whether ``annotation`` was made by ``accept`` for ``version`` (its regions carry the mark)."""
    regions = annotation.get("result") or []
    return bool(regions) and all((r.get("meta") or {}).get("accepted_by") == MARK
                                 and (r.get("meta") or {}).get("version") == version for r in regions)
