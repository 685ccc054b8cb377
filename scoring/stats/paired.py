"""Is version B really better than A?  Paired comparisons on the shared tasks.

* ``paired_diff``: mean(b) - mean(a) over the tasks both versions scored, its interval (the
  interval of the mean per-task difference: ``mean_ci`` rules, BCa bootstrap up to
  ``LARGE_N`` tasks, t above) and a two-sided p-value from the paired permutation test.
* ``sign_flip_pvalue``: the paired permutation test.  Under "no difference" each task's
  difference is as likely to be +d as -d, so we flip signs at random (all 2^n patterns when
  that is at most ``n_resamples``: exact) and count how often the mean is at least as far
  from 0 as observed.  Above ``LARGE_N`` tasks we use its normal limit: the sign-flip mean
  has variance sum(d^2) / n^2.
* ``mcnemar_exact``: the exact McNemar test for 0/1 scores (binomial test on the tasks
  where exactly one version is right).
* ``holm``: Holm's step-down adjustment when several controls or labels are tested at once.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from scoring.stats._common import LARGE_N, Interval, check_level
from scoring.stats.intervals import MEAN_RESAMPLES, bootstrap_mean_ci, t_interval

Scores = Sequence[float | None] | Mapping[object, float | None]


@dataclass(frozen=True)
class PairedDiff:
    """Result of ``paired_diff``: ``diff`` = mean(b) - mean(a) on ``n_shared`` tasks."""
    n_shared: int
    diff: float | None
    diff_ci: Interval
    p_value: float | None
    sd: float | None = None   # standard deviation of the per-task differences (for power estimates)


def shared_pairs(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray]:
    """The aligned scores of the tasks both sides scored.  Mappings (task id -> score) are
    matched on their ids; sequences must be aligned already.  ``None`` / NaN drop the task.

    >>> shared_pairs({"t1": 1.0, "t2": 0.0, "t3": None}, {"t2": 1.0, "t3": 1.0, "t4": 0.0})
    (array([0.]), array([1.]))
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        ids = [t for t in a if t in b]
        xs, ys = [a[t] for t in ids], [b[t] for t in ids]
    elif isinstance(a, Mapping) or isinstance(b, Mapping):
        raise TypeError("pass two mappings (task id -> score) or two aligned sequences")
    else:
        if len(a) != len(b):
            raise ValueError("aligned score sequences must have the same length")
        xs, ys = list(a), list(b)
    x = np.array([np.nan if v is None else v for v in xs], dtype=float)
    y = np.array([np.nan if v is None else v for v in ys], dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def sign_flip_pvalue(d: Sequence[float] | np.ndarray, seed: int = 0, n_resamples: int = MEAN_RESAMPLES) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of "mean difference 0".

    Exact (all 2^n sign patterns) when 2^n <= ``n_resamples``; random flips (p = (1 + hits) /
    (1 + n_resamples), as ``scipy.stats.permutation_test``) up to ``LARGE_N`` differences;
    the normal limit above.  Assumes tasks are independent and, under the null, each
    difference symmetric around 0.

    >>> sign_flip_pvalue([0.1, 0.2, 0.3, 0.05])      # exact: 2 of the 16 patterns are as extreme
    0.125
    """
    d = np.asarray(d, dtype=float)
    n = d.size
    if n == 0 or not d.any():
        return 1.0
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if n > LARGE_N:
        z = observed * n / math.sqrt(float((d ** 2).sum()))
        return float(2 * _st.norm.sf(z))
    if 2 ** n <= n_resamples:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
        return float((np.abs(signs @ d / n) >= observed - tol).mean())
    rng = np.random.default_rng(seed)
    hits, total = 0, float(d.sum())
    for start in range(0, n_resamples, 1000):
        flipped = rng.integers(0, 2, size=(min(1000, n_resamples - start), n), dtype=np.int8)
        hits += int((np.abs((total - 2 * (flipped @ d)) / n) >= observed - tol).sum())
    return (hits + 1) / (n_resamples + 1)


def paired_diff(a: Scores, b: Scores, level: float = 0.95, seed: int = 0,
                n_resamples: int = MEAN_RESAMPLES) -> PairedDiff:
    """Compare B with A on their shared tasks: diff = mean(b) - mean(a) (positive: B better),
    its interval and the paired permutation p-value.

    Assumes the shared tasks are a random sample of the tasks you care about and are
    independent of each other.  ``diff_ci`` is ``None`` below 2 shared tasks or when every
    task has the same difference; ``diff`` and ``p_value`` are ``None`` with no shared task.

    >>> a = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0] * 3
    >>> b = [1, 1, 1, 1, 0, 1, 1, 1, 1, 0] * 3
    >>> r = paired_diff(a, b)
    >>> r.n_shared, round(r.diff, 3), [round(v, 3) for v in r.diff_ci], round(r.p_value, 4)
    (30, 0.2, [0.1, 0.367], 0.0319)
    """
    x, y = shared_pairs(a, b)
    level = check_level(level)
    n = int(x.size)
    if n == 0:
        return PairedDiff(0, None, None, None)
    d = y - x
    sd = float(d.std(ddof=1)) if n > 1 else None
    ci = t_interval(d, level) if n > LARGE_N else bootstrap_mean_ci(d, level, seed, n_resamples)
    return PairedDiff(n, float(d.mean()), ci, sign_flip_pvalue(d, seed, n_resamples), sd)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: ``b`` tasks only A got right, ``c`` tasks only B got right."""
    b: int
    c: int
    p_value: float


def mcnemar_exact(a_correct: Scores, b_correct: Scores) -> McNemar:
    """Exact McNemar test of "A and B are equally often right" on shared 0/1 scores.

    Only the discordant tasks carry information; under the null each is equally likely to
    favour A or B, so p = two-sided binomial test of min(b, c) out of b + c at 1/2 (1.0 when
    there is no discordant task).  Assumes independent tasks.

    >>> mcnemar_exact([1, 1, 1, 0, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 1])
    McNemar(b=1, c=2, p_value=1.0)
    """
    x, y = shared_pairs(a_correct, b_correct)
    if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
        raise ValueError("mcnemar_exact needs 0/1 scores")
    b, c = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    p = 1.0 if b + c == 0 else float(_st.binomtest(min(b, c), b + c, 0.5).pvalue)
    return McNemar(b, c, min(1.0, p))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given): the i-th smallest p is
    multiplied by (m - i + 1), made monotone, capped at 1.  Controls the chance of any false
    "significant" among the m tests at the chosen level, with no assumption on dependence.

    >>> [round(p, 4) for p in holm([0.01, 0.04, 0.03, 0.20])]
    [0.04, 0.09, 0.09, 0.2]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]
