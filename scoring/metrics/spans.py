"""Labels over text (spans): one item per (label, start, end).

A span with several labels counts once per label.  Offsets are Python string
indices (any numbers work, e.g. seconds for audio).  Two spans match when they
have the same label and character IoU >= 0.5; see ``matching.max_matching``.
"""
from __future__ import annotations

from .matching import THRESHOLD, matched_label_stats
from .matching import group_by_label as _group
from .spec import ControlSpec, ResultMismatch, TagMetrics, is_number

EMPTY: tuple = ()


def extract(regions: list[dict], spec: ControlSpec) -> tuple:
    """All (label, start, end) items of the control's regions.

    >>> extract([{"value": {"start": 0, "end": 5, "text": "Alice", "labels": ["PER", "X"]}}], None)
    (('PER', 0, 5), ('X', 0, 5))
    """
    out = []
    for r in regions:
        try:
            v = r["value"]
            start, end, labels = v["start"], v["end"], v["labels"]
        except (KeyError, TypeError):
            raise ResultMismatch(_msg(spec, "needs value.start, value.end and value.labels")) from None
        if not ((type(start) is int and type(end) is int) or (is_number(start) and is_number(end))) or end < start:
            raise ResultMismatch(_msg(spec, f"has start={start!r}, end={end!r}: need numbers with start <= end"))
        if not isinstance(labels, list):
            raise ResultMismatch(_msg(spec, "needs a list in value.labels"))
        for label in labels:
            if type(label) is not str:
                raise ResultMismatch(_msg(spec, "has a label that is not a string"))
            out.append((label, start, end))
    return tuple(out)


def _msg(spec, what: str) -> str:
    return f"a span region of '{getattr(spec, 'name', '?')}' {what}"


def interval_iou(s1, e1, s2, e2) -> float:
    """Length of intersection over length of union of [s1, e1) and [s2, e2).

    >>> interval_iou(0, 10, 5, 15)   # 5 shared of 15
    0.3333333333333333
    >>> interval_iou(3, 3, 3, 3)     # identical empty spans
    1.0
    """
    inter = min(e1, e2) - max(s1, s2)
    if inter < 0:
        inter = 0
    union = (e1 - s1) + (e2 - s2) - inter
    if union <= 0:
        return 1.0 if (s1, e1) == (s2, e2) else 0.0
    return min(1.0, inter / union)


def _iou(a, b) -> float:
    return interval_iou(a[1], a[2], b[1], b[2])


def label_stats(a: tuple, b: tuple) -> dict[str, tuple[int, int, int]]:
    """Per label (tp, fp, fn): tp = matched pairs, fp = unmatched of ``a``, fn = unmatched of ``b``.

    >>> label_stats((("PER", 0, 5), ("ORG", 10, 14)), (("PER", 0, 4), ("ORG", 20, 24)))
    {'PER': (1, 0, 0), 'ORG': (0, 1, 1)}
    """
    return matched_label_stats(a, b, _iou)


def f1_from_stats(stats: dict) -> float:
    """2 * matched / (n_a + n_b) from per-label (tp, fp, fn); nothing on either side gives 1.0."""
    tp = total = 0
    for t, p, n in stats.values():
        tp += t
        total += 2 * t + p + n
    return 2 * tp / total if total else 1.0


def span_f1(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """F1 of matched spans: 2 * matched / (n_a + n_b).

    >>> # PER spans overlap 4 of 5 chars (IoU 0.8, matched); ORG spans do not overlap
    >>> span_f1((("PER", 0, 5), ("ORG", 10, 14)), (("PER", 0, 4), ("ORG", 20, 24)))
    0.5
    """
    return f1_from_stats(label_stats(a, b))




def _merge(intervals: list) -> list:
    intervals.sort()
    out: list = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return out


def _intersection_length(xs: list, ys: list) -> float:
    i = j = 0
    total = 0
    while i < len(xs) and j < len(ys):
        lo = max(xs[i][0], ys[j][0])
        hi = min(xs[i][1], ys[j][1])
        if hi > lo:
            total += hi - lo
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return total


def char_overlap(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """Character overlap per label: |intersection| / |union| of the labelled character
    sets, pooled over labels (a character counts once per label it carries).

    >>> # PER: [0,10) vs [5,15) share 5 of 15 chars; ORG: [20,24) on one side only (4 chars)
    >>> char_overlap((("PER", 0, 10), ("ORG", 20, 24)), (("PER", 5, 15),))   # 5 / (15 + 4)
    0.2631578947368421
    """
    ga, gb = _group(a), _group(b)
    inter = union = 0.0
    for label in ga.keys() | gb.keys():
        xs = _merge([[s, e] for _, s, e in ga.get(label, ())])
        ys = _merge([[s, e] for _, s, e in gb.get(label, ())])
        i = _intersection_length(xs, ys)
        inter += i
        union += sum(e - s for s, e in xs) + sum(e - s for s, e in ys) - i
    if union <= 0:  # nothing, or only empty spans
        return 1.0 if set(a) == set(b) else 0.0
    return min(1.0, inter / union)


__all__ = ["EMPTY", "THRESHOLD", "extract", "interval_iou", "label_stats", "span_f1", "char_overlap", "f1_from_stats",
           "METRICS"]


METRICS = TagMetrics(default="span_f1", extract=extract, empty=EMPTY, label_stats=label_stats, metrics={
    "span_f1": span_f1,
    "char_overlap": char_overlap,
}, from_stats={"span_f1": f1_from_stats})
