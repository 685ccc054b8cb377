"""Chance-corrected agreement for single-choice controls, from well-kept libraries.

* ``cohen_kappa``: two sources, scikit-learn's ``cohen_kappa_score``.
* ``krippendorff_alpha``: nominal alpha for two or more sources, missing values
  allowed, the ``krippendorff`` package.

Both return ``None`` where the statistic is undefined (no pairs, or no variation
at all: expected disagreement is 0), so reports stay JSON (no NaN).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np


def cohen_kappa(ref: Sequence[str], pred: Sequence[str]) -> float | None:
    """Cohen's kappa between two equally long label lists.

    >>> cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"])   # po 0.75, pe 0.5
    0.5
    """
    if len(ref) != len(pred):
        raise ValueError("cohen_kappa needs two lists of the same length")
    if not ref:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(list(ref), list(pred))
    k = float(k)
    return None if math.isnan(k) else k


def krippendorff_alpha(rows: Sequence[Sequence[str | None]], labels: Sequence[str] = ()) -> float | None:
    """Nominal Krippendorff's alpha.  ``rows[s][u]`` is source s's label for unit u
    (``None`` = missing).  ``labels`` fixes the value domain order (extra labels found in
    the data are appended).

    >>> # coincidences: n_a = 3, n_b = 5, n = 8, disagreeing pairs 2: 1 - 7 * 2 / (2 * 3 * 5)
    >>> krippendorff_alpha([["a", "a", "b", "b"], ["a", "b", "b", "b"]])
    0.5333333333333333
    """
    if not rows or len(rows) < 2:
        return None
    domain = list(dict.fromkeys(labels))
    index = {v: i for i, v in enumerate(domain)}
    for row in rows:
        for v in row:
            if v is not None and v not in index:
                index[v] = len(domain)
                domain.append(v)
    n_units = len(rows[0])
    if n_units == 0 or any(len(r) != n_units for r in rows):
        return None if n_units == 0 else _raise_len()
    data = np.full((len(rows), n_units), np.nan)
    for s, row in enumerate(rows):
        data[s] = [np.nan if v is None else index[v] for v in row]
    if len(domain) < 2:
        return None
    # at least one unit coded by two sources, else alpha is undefined
    if not ((~np.isnan(data)).sum(axis=0) >= 2).any():
        return None
    import krippendorff

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        a = krippendorff.alpha(reliability_data=data, value_domain=list(range(len(domain))),
                               level_of_measurement="nominal")
    a = float(a)
    return None if math.isnan(a) else a


def _raise_len():
    raise ValueError("krippendorff_alpha needs rows of the same length")
