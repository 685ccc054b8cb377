"""Project-wide scores from a small ground-truth set: prediction-powered inference (PPI).

Setting: version V is scored on every task against a proxy version P (cheap, no
annotation needed), and on a few annotated tasks against ground truth.  Per task,
``y`` = V's agreement with ground truth (labeled tasks only) and ``yhat`` = V's agreement
with P.  PPI (Angelopoulos et al., Science 2023) estimates the project-wide mean of ``y``:

    estimate = mean(yhat over the unlabeled tasks) + mean(y - yhat over the labeled tasks)

The second term (the *rectifier*) removes the proxy's bias, so the estimate stays
unbiased however poor the proxy is; the interval is the normal (CLT) interval with

    variance = var(yhat_unlabeled) / N + var(y - yhat) / n

PPI helps when the proxy tracks the truth (var(y - yhat) well below var(y)) and N is much
larger than n.  When the proxy is poor it can be *wider* than the classical interval, so
by default (``lam="auto"``) we use PPI++ power tuning (Angelopoulos, Duchi & Zrnic 2023):
estimate = lam * mean(yhat_U) + mean(y - lam * yhat_L) with

    lam = cov(y, yhat_L) / ((1 + n / N) * var(yhat over all tasks)), clipped to [0, 1]

(0 = the classical estimate, 1 = plain PPI), as ``ppi_py`` does.  Assumptions: the labeled
tasks are a uniform random sample of the project (no cherry-picking which to annotate; for
chosen-by-probability samples use ``active.ht_mean``), tasks are independent, n is large
enough for the normal approximation (say 30+).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scoring.stats._common import Interval, finite, z_value


@dataclass(frozen=True)
class PPIResult:
    """``score`` with its PPI interval ``ci``; ``classical_ci`` uses the labeled tasks only
    (normal interval mean(y) +- z * sd(y) / sqrt(n)); ``lam`` is the weight given to the proxy."""
    score: float | None
    ci: Interval
    classical_ci: Interval
    n_labeled: int
    n_unlabeled: int
    lam: float


def ppi_lambda(y: np.ndarray, yhat_l: np.ndarray, yhat_u: np.ndarray) -> float:
    """PPI++ power-tuning weight for a mean, clipped to [0, 1] (see the module docstring).

    >>> y, yhat_l = np.array([1.0, 0, 1, 1]), np.array([1.0, 0, 1, 0])
    >>> round(ppi_lambda(y, yhat_l, np.array([1.0, 0, 1, 1, 0, 1])), 3)   # (1/6) / ((1 + 4/6) * 4/15)
    0.375
    """
    n, big_n = y.size, yhat_u.size
    var_all = float(np.concatenate([yhat_l, yhat_u]).var(ddof=1))
    if n < 2 or var_all == 0:
        return 0.0
    cov = float(np.cov(y, yhat_l, ddof=1)[0, 1])
    return float(np.clip(cov / ((1 + n / big_n) * var_all), 0.0, 1.0))


def _normal(centre: float, se: float, z: float) -> Interval:
    return None if not se > 0 else (centre - z * se, centre + z * se)


def ppi_mean(y_labeled: Sequence[float], yhat_labeled: Sequence[float], yhat_unlabeled: Sequence[float],
             level: float = 0.95, lam: float | str = "auto") -> PPIResult:
    """Prediction-powered estimate and interval for the mean of ``y`` over all tasks.

    ``y_labeled[i]`` and ``yhat_labeled[i]`` belong to the same annotated task;
    ``yhat_unlabeled`` holds the proxy agreement on the tasks without ground truth.
    ``lam``: "auto" (PPI++), 1.0 (plain PPI) or any weight in [0, 1].  Intervals are ``None``
    with fewer than 2 labeled tasks or zero variance; ``score`` is ``None`` with no labeled task.

    >>> y    = [1, 1, 0, 1, 1, 1, 0, 1, 1, 1] * 3
    >>> yhat = [1, 1, 0, 1, 1, 0, 0, 1, 1, 1] * 3          # V-vs-proxy equals V-vs-truth on 27 of 30
    >>> r = ppi_mean(y, yhat, [1, 1, 0, 1, 0, 1, 1, 1] * 250, lam=1.0)
    >>> round(r.score, 3), [round(v, 3) for v in r.ci], [round(v, 3) for v in r.classical_ci]
    (0.85, [0.739, 0.961], [0.654, 0.946])
    """
    y, yl, yu = finite(y_labeled), finite(yhat_labeled), finite(yhat_unlabeled)
    if y.size != yl.size:
        raise ValueError("y_labeled and yhat_labeled must have one finite value per labeled task")
    n, big_n = int(y.size), int(yu.size)
    if n == 0:
        return PPIResult(None, None, None, 0, big_n, 0.0)
    z = z_value(level)
    classical = _normal(float(y.mean()), float(y.std(ddof=1)) / math.sqrt(n), z) if n > 1 else None
    if big_n == 0:
        return PPIResult(float(y.mean()), classical, classical, n, 0, 0.0)
    weight = ppi_lambda(y, yl, yu) if lam == "auto" else float(lam)
    score = weight * float(yu.mean()) + float((y - weight * yl).mean())
    if n < 2:
        return PPIResult(score, None, None, n, big_n, weight)
    var_u = float((weight * yu).var(ddof=1)) / big_n if big_n > 1 else 0.0
    se = math.sqrt(var_u + float((y - weight * yl).var(ddof=1)) / n)
    return PPIResult(score, _normal(score, se, z), classical, n, big_n, weight)
