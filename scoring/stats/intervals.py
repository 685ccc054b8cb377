"""Intervals for a mean per-task score.

``mean_ci`` picks the method from the data and says so in ``mean_ci_method``:

* only 0/1 scores (exact match): the **Wilson** score interval.  It is analytic (instant
  at any n), stays inside [0, 1], is defined at 0 and at n successes, and its coverage is
  close to the nominal level on average.  Clopper-Pearson was not chosen: it guarantees *at
  least* the level, so it is wider than needed (typically 97-99% coverage for 95%).
* other scores, n <= ``LARGE_N``: the **BCa bootstrap** (``scipy.stats.bootstrap``,
  vectorized).  BCa corrects the percentile interval for bias and skew, which matters for
  scores piled up near 1.  BCa is undefined when the resamples never vary or the
  acceleration cannot be computed; then we use the percentile method, and if that is
  undefined too, ``None``.
* other scores, n > ``LARGE_N``: the **Student t** interval (mean +- t * sd / sqrt(n)); at
  that size the bootstrap interval and the t interval agree closely and t is instant.

``None`` is returned when fewer than two tasks have a score, or when every score is the
same non-0/1 value (no spread: no method can say how far the mean could move).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

from scoring.stats._common import LARGE_N, Interval, check_level, finite, z_value

MEAN_RESAMPLES = 9999
_BATCH = 1000  # bootstrap resamples per batch: bounds memory at LARGE_N tasks to ~16 MB


def wilson(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for a proportion ``successes / n``.

    Assumes independent tasks, each a success with the same probability.  ``None`` for n < 1.

    >>> lo, hi = wilson(81, 100)        # 81% exact match on 100 tasks
    >>> round(lo, 4), round(hi, 4)
    (0.7222, 0.8749)
    >>> [round(v, 4) for v in wilson(0, 20)]   # defined at 0 successes, unlike the normal interval
    [0.0, 0.1611]
    """
    if n < 1:
        return None
    z = z_value(level)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Student t interval for the mean: mean +- t(n-1) * sd / sqrt(n).

    Assumes independent tasks and a sampling distribution of the mean close to normal
    (true for large n by the central limit theorem).  ``None`` for n < 2 or sd 0.

    >>> [round(v, 4) for v in t_interval([0.2, 0.4, 0.6, 0.8])]
    [0.0891, 0.9109]
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 2:
        return None
    if x.min() == x.max():
        return None
    sd = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + check_level(level) / 2, n - 1)) * sd / math.sqrt(n)
    m = float(x.mean())
    return m - half, m + half


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95, seed: int = 0,
                      n_resamples: int = MEAN_RESAMPLES) -> Interval:
    """BCa bootstrap interval for the mean (``scipy.stats.bootstrap``, vectorized, seeded);
    falls back to the percentile method where BCa is undefined, then to ``None``.

    Assumes independent tasks.

    >>> x = [0.9, 0.95, 1.0, 0.6, 0.85, 1.0, 0.7, 0.8, 0.95, 1.0]
    >>> [round(v, 3) for v in bootstrap_mean_ci(x)]
    [0.775, 0.94]
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2 or x.min() == x.max():
        return None
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = _st.bootstrap((x,), np.mean, confidence_level=check_level(level), n_resamples=n_resamples,
                                method=method, rng=np.random.default_rng(seed), vectorized=True, batch=_BATCH)
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi) and lo < hi:
            return lo, hi
    return None


def is_binary(x: np.ndarray) -> bool:
    """True when every value is 0 or 1.

    >>> is_binary(np.array([0.0, 1.0, 1.0])), is_binary(np.array([0.0, 0.5]))
    (True, False)
    """
    return bool(np.isin(x, (0.0, 1.0)).all())


def mean_ci_method(n: int, binary: bool) -> str:
    """Name of the method ``mean_ci`` uses for ``n`` scores (see the module docstring).

    >>> mean_ci_method(100, True), mean_ci_method(100, False), mean_ci_method(50_000, False)
    ('wilson', 'bca', 't')
    """
    if binary:
        return "wilson"
    return "bca" if n <= LARGE_N else "t"


def mean_ci(values: Sequence[float | None] | np.ndarray, level: float = 0.95, seed: int = 0,
            n_resamples: int = MEAN_RESAMPLES) -> Interval:
    """Confidence interval for the mean per-task score (``None`` / NaN scores are dropped).

    Method: Wilson for 0/1 scores, BCa bootstrap up to ``LARGE_N`` tasks, Student t above
    (see the module docstring for why).  Same inputs and seed give the same interval.

    >>> [round(v, 4) for v in mean_ci([1] * 81 + [0] * 19)]      # 0/1: Wilson
    [0.7222, 0.8749]
    >>> [round(v, 3) for v in mean_ci([0.9, 0.95, 1.0, 0.6, 0.85, 1.0, 0.7, 0.8, 0.95, 1.0])]
    [0.775, 0.94]
    >>> mean_ci([0.5]) is None, mean_ci([0.5, 0.5, 0.5]) is None   # one task; no spread
    (True, True)
    """
    x = finite(values)
    if x.size < 2:
        return None
    method = mean_ci_method(x.size, is_binary(x))
    if method == "wilson":
        return wilson(int(x.sum()), int(x.size), level)
    if method == "bca":
        return bootstrap_mean_ci(x, level, seed, n_resamples)
    return t_interval(x, level)
