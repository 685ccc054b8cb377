"""Task-bootstrap intervals for pooled statistics: a pooled ratio, per-label
precision / recall / F1, Cohen's kappa, Krippendorff's alpha, and any statistic.

All resample *tasks* with replacement (tasks are the independent units; the spans or
labels inside one task are not), recompute the pooled statistic on each resample and
return the percentile interval.  The pooled ones are vectorized: every resample is a
weighted sum of per-task rows (``resampled_sums``), so 100,000 tasks take milliseconds.

Conventions: ``None`` when the statistic itself is undefined on the data (zero
denominator, fewer than two tasks) or when the resamples never vary (e.g. no false
positive anywhere: the bootstrap cannot say how sure, and a zero-width interval would be
invented certainty).  A resample where the statistic is undefined (e.g. no predicted
mention drawn) is left out of the percentiles.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from scoring.stats._common import Interval, check_level, percentile_interval, resampled_sums

TABLE_RESAMPLES = 2000
SLOW_RESAMPLES = 1000


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float], level: float = 0.95, seed: int = 0,
             n_resamples: int = TABLE_RESAMPLES) -> Interval:
    """Interval for the pooled ratio sum(numerators) / sum(denominators) (e.g. the share of
    correct spans over all spans), bootstrapping tasks.  One entry per task.

    >>> num = [2, 1, 3, 0, 2, 1, 3, 2, 1, 2]; den = [3, 2, 3, 1, 2, 2, 4, 2, 2, 3]
    >>> [round(v, 3) for v in ratio_ci(num, den)]                # pooled 17 / 24 = 0.708
    [0.571, 0.833]
    """
    rows = np.column_stack([np.asarray(numerators, float), np.asarray(denominators, float)])
    if len(rows) < 2 or rows[:, 1].sum() <= 0:
        return None
    sums = resampled_sums(rows, n_resamples, seed)
    return percentile_interval(_ratio(sums[:, 0], sums[:, 1]), check_level(level))


def prf_ci(counts: Mapping[str, Sequence[Sequence[int]]], level: float = 0.95, seed: int = 0,
           n_resamples: int = TABLE_RESAMPLES) -> dict[str, dict[str, Interval]]:
    """Per-label intervals for pooled precision, recall and F1 from per-task counts.

    ``counts[label][i] = (tp, fp, fn)`` of task i (the same task order for every label).
    All labels share the same resamples.  Precision = tp / (tp + fp), recall = tp / (tp +
    fn), F1 = 2tp / (2tp + fp + fn), each pooled over the resampled tasks.

    >>> rows = [(2, 0, 1), (1, 1, 0), (3, 0, 0), (0, 1, 1), (2, 1, 0), (1, 0, 1)] * 5
    >>> ci = prf_ci({"PER": rows})["PER"]                      # P = R = F1 = 0.75
    >>> {k: [round(v, 3) for v in ci[k]] for k in ("precision", "recall", "f1")}
    {'precision': [0.648, 0.841], 'recall': [0.644, 0.845], 'f1': [0.66, 0.821]}
    """
    labels = list(counts)
    if not labels:
        return {}
    stacked = np.concatenate([np.asarray(counts[lab], dtype=float).reshape(-1, 3) for lab in labels], axis=1)
    level = check_level(level)
    if stacked.shape[0] < 2:
        return {lab: {"precision": None, "recall": None, "f1": None} for lab in labels}
    sums = resampled_sums(stacked, n_resamples, seed)
    totals = stacked.sum(axis=0)
    out: dict[str, dict[str, Interval]] = {}
    for j, lab in enumerate(labels):
        tp, fp, fn = (sums[:, 3 * j + c] for c in range(3))
        ttp, tfp, tfn = totals[3 * j:3 * j + 3]
        out[lab] = {
            "precision": percentile_interval(_ratio(tp, tp + fp), level) if ttp + tfp > 0 else None,
            "recall": percentile_interval(_ratio(tp, tp + fn), level) if ttp + tfn > 0 else None,
            "f1": percentile_interval(_ratio(2 * tp, 2 * tp + fp + fn), level) if ttp + tfp + tfn > 0 else None,
        }
    return out


def _codes(columns: Sequence[Sequence[Hashable | None]]) -> tuple[np.ndarray, int]:
    """Integer codes (-1 = missing) for label columns; returns (codes[source, task], n_labels)."""
    index: dict[Hashable, int] = {}
    codes = np.array([[-1 if v is None else index.setdefault(v, len(index)) for v in col] for col in columns],
                     dtype=np.int64)
    return codes.reshape(len(columns), -1), len(index)


def kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices ``tables[..., L, L]`` (NaN where undefined).

    >>> float(kappa_from_tables(np.array([[1, 1], [0, 2]])))   # po 0.75, pe 0.5
    0.5
    """
    t = np.asarray(tables, dtype=float)
    total = t.sum(axis=(-2, -1))
    with np.errstate(all="ignore"):
        po = np.trace(t, axis1=-2, axis2=-1) / total
        pe = (t.sum(axis=-1) * t.sum(axis=-2)).sum(axis=-1) / total ** 2
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def kappa_ci(ref: Sequence[Hashable], pred: Sequence[Hashable], level: float = 0.95, seed: int = 0,
             n_resamples: int = SLOW_RESAMPLES) -> Interval:
    """Interval for Cohen's kappa between two label lists (one label per task, same order),
    bootstrapping tasks.  Same point estimate as ``scoring.agreement.cohen_kappa``.

    >>> ref = ["a", "a", "b", "b", "c", "a", "b", "c", "c", "a"] * 4
    >>> pred = ["a", "b", "b", "b", "c", "a", "a", "c", "b", "a"] * 4
    >>> [round(v, 3) for v in kappa_ci(ref, pred)]
    [0.321, 0.734]
    """
    if len(ref) != len(pred):
        raise ValueError("kappa_ci needs two lists of the same length")
    if len(ref) < 2:
        return None
    codes, n_lab = _codes([ref, pred])
    cells = np.zeros((codes.shape[1], n_lab * n_lab))
    cells[np.arange(codes.shape[1]), codes[0] * n_lab + codes[1]] = 1
    sums = resampled_sums(cells, n_resamples, seed).reshape(-1, n_lab, n_lab)
    if not np.isfinite(kappa_from_tables(cells.sum(axis=0).reshape(n_lab, n_lab))):
        return None
    return percentile_interval(kappa_from_tables(sums), check_level(level))


def alpha_from_coincidences(o: np.ndarray) -> np.ndarray:
    """Nominal Krippendorff's alpha of coincidence matrices ``o[..., L, L]`` (NaN where
    undefined): 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k.

    >>> float(alpha_from_coincidences(np.array([[2.0, 1.0], [1.0, 4.0]])))   # 1 - 7 * 2 / 30
    0.5333333333333333
    """
    o = np.asarray(o, dtype=float)
    n_c = o.sum(axis=-1)
    n = n_c.sum(axis=-1)
    disagree = o.sum(axis=(-2, -1)) - np.trace(o, axis1=-2, axis2=-1)
    expected = n ** 2 - (n_c ** 2).sum(axis=-1)
    with np.errstate(all="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * disagree / expected, np.nan)


def coincidence_rows(rows: Sequence[Sequence[Hashable | None]]) -> np.ndarray:
    """Each task's contribution to Krippendorff's coincidence matrix, shape (tasks, L, L):
    (n_uc * n_uk - [c == k] * n_uc) / (m_u - 1) for a task with m_u >= 2 values, else 0.
    Summed over tasks it is the coincidence matrix.

    >>> coincidence_rows([["a", "a"], ["a", "b"]]).tolist()
    [[[2.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]
    """
    codes, n_lab = _codes(rows)
    n_units = codes.shape[1]
    values = np.zeros((n_units, n_lab))
    for src in codes:
        seen = src >= 0
        np.add.at(values, (np.nonzero(seen)[0], src[seen]), 1)
    m = values.sum(axis=1)
    pairs = values[:, :, None] * values[:, None, :] - values[:, :, None] * np.eye(n_lab)
    with np.errstate(all="ignore"):
        return np.where((m >= 2)[:, None, None], pairs / np.maximum(m - 1, 1)[:, None, None], 0.0)


def alpha_ci(rows: Sequence[Sequence[Hashable | None]], level: float = 0.95, seed: int = 0,
             n_resamples: int = SLOW_RESAMPLES) -> Interval:
    """Interval for nominal Krippendorff's alpha, bootstrapping tasks (units).

    ``rows[s][u]`` is source s's label for task u, ``None`` = missing (the layout of
    ``scoring.agreement.krippendorff_alpha``, which gives the same point estimate).  Each
    task contributes its coincidences (pairs of values within the task, weighted 1 / (m - 1)
    for m values); tasks with fewer than two values contribute nothing.  This is a plain
    task bootstrap, not Hayes & Krippendorff's (2007) resampling of pairable values.

    >>> a = ["a", "a", "b", "b", "c", "a", "b", "c", "c", "a"] * 4
    >>> b = ["a", "b", "b", "b", "c", "a", "a", "c", "b", None] * 4
    >>> [round(v, 3) for v in alpha_ci([a, b])]
    [0.247, 0.702]
    """
    if len(rows) < 2 or len(rows[0]) < 2:
        return None
    if any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("alpha_ci needs rows of the same length")
    contrib = coincidence_rows(rows)
    n_units, n_lab = contrib.shape[0], contrib.shape[1]
    flat = contrib.reshape(n_units, n_lab * n_lab)
    if not np.isfinite(alpha_from_coincidences(flat.sum(axis=0).reshape(n_lab, n_lab))):
        return None
    sums = resampled_sums(flat, n_resamples, seed).reshape(-1, n_lab, n_lab)
    return percentile_interval(alpha_from_coincidences(sums), check_level(level))


def statistic_ci(rows: Sequence[object], statistic: Callable[[list], float | None], level: float = 0.95,
                 seed: int = 0, n_resamples: int = SLOW_RESAMPLES) -> Interval:
    """Interval for any statistic of per-task items by the task bootstrap (percentile).

    ``statistic`` receives a resampled list of the items (one per task) and returns a float
    or ``None`` (undefined on that resample: left out).  It is called ``n_resamples`` times
    in a Python loop, so use the vectorized ``kappa_ci`` / ``alpha_ci`` / ``prf_ci`` for large
    task counts; this is for small sets and new statistics.

    >>> from scoring.agreement import cohen_kappa
    >>> pairs = list(zip(["a", "a", "b", "b", "c"] * 8, ["a", "b", "b", "b", "c"] * 8))
    >>> kappa = lambda items: cohen_kappa([r for r, _ in items], [p for _, p in items])
    >>> [round(v, 3) for v in statistic_ci(pairs, kappa, n_resamples=200)]
    [0.487, 0.846]
    """
    items = list(rows)
    if len(items) < 2:
        return None
    rng = np.random.default_rng(seed)
    reps = np.full(n_resamples, np.nan)
    for b in range(n_resamples):
        value = statistic([items[i] for i in rng.integers(0, len(items), len(items))])
        if value is not None:
            reps[b] = value
    return percentile_interval(reps, check_level(level))
