"""Maximum one-to-one matching of regions (spans, boxes) with IoU >= 0.5.

The matching with the most pairs is found with ``scipy.optimize.linear_sum_assignment``
(a greedy pass can miss pairs); among matchings with the most pairs, the one
with the largest IoU sum is chosen, so results do not depend on argument order.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

THRESHOLD = 0.5


def max_matching(xs: Sequence, ys: Sequence, iou: Callable[[object, object], float]) -> tuple[int, float]:
    """Return (number of matched pairs, sum of their IoU).

    >>> from scoring.metrics.spans import interval_iou
    >>> # greedy would take the best pair x0-y0 (IoU 1.0) and leave x1 unmatched
    >>> pairs = max_matching([(0, 10), (3, 10)], [(0, 10), (0, 6)],
    ...                      lambda a, b: interval_iou(a[0], a[1], b[0], b[1]))
    >>> pairs[0], round(pairs[1], 6)   # x0-y1 (0.6) and x1-y0 (0.7)
    (2, 1.3)
    """
    n, m = len(xs), len(ys)
    if n == 0 or m == 0:
        return 0, 0.0
    if n == 1 and m == 1:
        v = iou(xs[0], ys[0])
        return (1, v) if v >= THRESHOLD else (0, 0.0)
    rows = [[iou(x, y) for y in ys] for x in xs]
    # Fast path: no region is eligible with two others, so the eligible pairs are the matching.
    col_hits = [0] * m
    conflict = False
    count, total = 0, 0.0
    for row in rows:
        hits = 0
        for j, v in enumerate(row):
            if v >= THRESHOLD:
                hits += 1
                col_hits[j] += 1
                count += 1
                total += v
        if hits > 1:
            conflict = True
    if not conflict and max(col_hits) <= 1:
        return count, total
    big = float(min(n, m) + 1)   # one more pair always outweighs any IoU sum
    w = np.array(rows, dtype=float)
    eligible = w >= THRESHOLD
    weights = np.where(eligible, big + w, 0.0)
    r, c = linear_sum_assignment(weights, maximize=True)
    keep = eligible[r, c]
    return int(keep.sum()), float(w[r, c][keep].sum())


def group_by_label(items) -> dict:
    """Items (tuples whose first field is the label) grouped by label, in order."""
    g: dict = {}
    for it in items:
        g.setdefault(it[0], []).append(it)
    return g


def matched_label_stats(
    a: Sequence, b: Sequence, iou: Callable[[object, object], float]
) -> dict[str, tuple[int, int, int]]:
    """Per label (tp, fp, fn) of the maximum one-to-one matching with ``iou`` >= the threshold:
    tp = matched pairs, fp = unmatched items of ``a``, fn = unmatched items of ``b``."""
    ga, gb = group_by_label(a), group_by_label(b)
    out = {}
    for label, xs in ga.items():
        ys = gb.get(label)
        if ys is None:
            out[label] = (0, len(xs), 0)
        else:
            m = max_matching(xs, ys, iou)[0]
            out[label] = (m, len(xs) - m, len(ys) - m)
    for label, ys in gb.items():
        if label not in ga:
            out[label] = (0, 0, len(ys))
    return out
