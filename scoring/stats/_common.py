"""Shared helpers of the statistics package: the interval type, level checks, the
normal quantile, and the fast task bootstrap behind the pooled statistics.

The task bootstrap resamples *tasks* with replacement.  Pooled statistics (precision,
kappa, alpha) only depend on the resampled tasks through sums of per-task rows, so a
resample is fully described by how often each task was drawn.  Tasks with identical rows
are interchangeable, so we group them (``np.unique``) and draw the group counts from a
multinomial: this is exactly the same distribution as drawing task indices, and costs
``n_resamples x n_groups`` instead of ``n_resamples x n_tasks``.  When almost every row is
distinct we draw indices in chunks instead, and past ``LARGE_N`` such tasks we draw the
sums from their normal limit (see ``resampled_sums``).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import stats as _st

Interval = tuple[float, float] | None
"""``(lo, hi)`` or ``None`` when the interval is undefined (too few tasks, no spread)."""

LARGE_N = 2000
"""Above this many tasks the resampling methods switch to their large-sample (normal / t)
limits: at that size the BCa and the t interval ends differ by about 1-2% of the interval's
width on skewed [0, 1] scores (measured on Beta(5, 2) and clipped exponential samples), and
the analytic form keeps 100,000 tasks to milliseconds."""

_CHUNK_CELLS = 4_000_000  # resample cells per chunk: bounds memory (~32 MB of int64)


def check_level(level: float) -> float:
    """Return ``level`` if it is a usable confidence level (strictly between 0 and 1).

    >>> check_level(0.9)
    0.9
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1 (got {level})")
    return float(level)


def z_value(level: float) -> float:
    """Two-sided normal quantile for ``level``: 1.96 for 0.95.

    >>> round(z_value(0.95), 3)
    1.96
    """
    return float(_st.norm.ppf(0.5 + check_level(level) / 2))


def finite(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Values as a float array without ``None`` / NaN (tasks that could not be scored).

    >>> finite([1, None, float("nan"), 0.5]).tolist()
    [1.0, 0.5]
    """
    x: np.ndarray
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        x = values.astype(float, copy=False).ravel()
    else:
        x = np.array([np.nan if v is None else v for v in values], dtype=float)
    return x[np.isfinite(x)]


def percentile_interval(replicates: np.ndarray, level: float) -> Interval:
    """Percentile interval of bootstrap replicates (NaN replicates, e.g. a resample with a
    zero denominator, are left out).  ``None`` when fewer than two replicates are defined or
    they never vary: a zero-width interval would claim a certainty the data do not give.

    >>> [round(v, 6) for v in percentile_interval(np.arange(101.0), 0.9)]
    [5.0, 95.0]
    >>> percentile_interval(np.ones(10), 0.9) is None
    True
    """
    r = replicates[np.isfinite(replicates)]
    if r.size < 2 or r.min() == r.max():
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)


def resampled_sums(rows: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums of ``rows`` (one row per task) over ``n_resamples`` task bootstrap
    resamples: an array of shape ``(n_resamples, n_columns)``.

    Exact resampling when it is cheap: few distinct rows (a multinomial over the groups of
    identical rows) or at most ``LARGE_N`` tasks (drawn indices).  Otherwise (many tasks,
    nearly all different) the sums are drawn from their large-sample limit, the normal
    distribution with mean = the observed sums and covariance = n * covariance of the rows
    (the central limit theorem applied to the bootstrap itself).

    >>> sums = resampled_sums(np.array([[1, 0], [0, 1], [1, 1]]), 4, seed=0)
    >>> sums.shape, bool((sums.sum(axis=1) >= 3).all())   # each resample has 3 tasks
    ((4, 2), True)
    """
    rows = np.asarray(rows, dtype=float)
    groups, inverse, counts = group_rows(rows)
    n, k = len(rows), len(counts)
    rng = np.random.default_rng(seed)
    if k * 20 > n > LARGE_N:
        cov = np.atleast_2d(np.cov(rows, rowvar=False, ddof=0)) * n
        return rng.multivariate_normal(rows.sum(axis=0), cov, size=n_resamples, method="eigh")
    out = np.empty((n_resamples, rows.shape[1]), dtype=float)
    for start, weights in _weight_chunks(inverse.ravel(), counts, n_resamples, rng):
        out[start:start + len(weights)] = weights @ groups
    return out


def group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows, each row's group and the group sizes (like ``np.unique(axis=0)``).
    Fast path: group on one random projection of each row, then check that every row equals
    its group's row (exact; falls back to ``np.unique`` if two rows ever collided).

    >>> g, inv, c = group_rows(np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0]]))
    >>> inv.tolist(), c.tolist(), bool((g[inv] == [[1, 2], [0, 1], [1, 2]]).all())
    ([1, 0, 1], [1, 2], True)
    """
    key = rows @ np.random.default_rng(12345).uniform(1.0, 2.0, rows.shape[1])
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    groups = rows[first]
    if np.array_equal(groups[inverse], rows):
        return groups, inverse, counts
    groups, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    return groups, inverse.ravel(), counts


def _weight_chunks(inverse: np.ndarray, counts: np.ndarray, n_resamples: int,
                   rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_resample, weights)`` with ``weights[b, k]`` = how often group k was drawn."""
    n, k = len(inverse), len(counts)
    multinomial = k * 20 <= n         # few groups: a binomial per group beats one index per task
    per_chunk = max(1, _CHUNK_CELLS // (k if multinomial else n))
    for start in range(0, n_resamples, per_chunk):
        b = min(per_chunk, n_resamples - start)
        if multinomial:
            yield start, _multinomial(n, counts, b, rng)
        else:
            drawn = inverse[rng.integers(0, n, size=(b, n))] + (np.arange(b) * k)[:, None]
            yield start, np.bincount(drawn.ravel(), minlength=b * k).reshape(b, k)


def _multinomial(n: int, counts: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """``b`` multinomial draws of n tasks over groups of sizes ``counts`` (probabilities
    counts / n), by the conditional-binomial method vectorized over the draws: group k gets
    Binomial(tasks left, its share of the groups left).  Same distribution as
    ``rng.multinomial``, but one numpy call per group instead of one per draw."""
    out = np.empty((b, len(counts)), dtype=np.int64)
    left = np.full(b, n, dtype=np.int64)
    mass = float(n)
    for k, c in enumerate(counts[:-1]):
        out[:, k] = rng.binomial(left, min(1.0, c / mass))
        left -= out[:, k]
        mass -= c
    out[:, -1] = left
    return out
