"""Choices (single or multiple): the selected set of each side.

Value: ``frozenset`` of choice strings (union over the control's regions).
Label stats per label: (tp, fp, fn) with the prediction as first argument.
"""
from __future__ import annotations

from .spec import ControlSpec, ResultMismatch, TagMetrics

EMPTY: frozenset = frozenset()


def extract(regions: list[dict], spec: ControlSpec) -> frozenset:
    """Union of ``value.choices`` over the regions.

    >>> extract([{"value": {"choices": ["A"]}}, {"value": {"choices": ["B"]}}], None) == {"A", "B"}
    True
    """
    if len(regions) == 1:
        try:
            out = frozenset(regions[0]["value"]["choices"])
        except (KeyError, TypeError):
            raise ResultMismatch(_msg(spec)) from None
    else:
        acc: set = set()
        for r in regions:
            try:
                acc.update(r["value"]["choices"])
            except (KeyError, TypeError):
                raise ResultMismatch(_msg(spec)) from None
        out = frozenset(acc)
    for c in out:
        if type(c) is not str:
            raise ResultMismatch(_msg(spec))
    return out


def _msg(spec) -> str:
    name = getattr(spec, "name", "?")
    return f"a region of '{name}' has no list of strings in value.choices"


def exact(a: frozenset, b: frozenset, spec: ControlSpec | None = None) -> float:
    """1.0 when the two selected sets are equal, else 0.0.

    >>> exact(frozenset({"A", "B"}), frozenset({"B", "A"}))
    1.0
    >>> exact(frozenset({"A"}), frozenset({"A", "B"}))
    0.0
    """
    return 1.0 if a == b else 0.0


def jaccard(a: frozenset, b: frozenset, spec: ControlSpec | None = None) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets give 1.0.

    >>> jaccard(frozenset({"A", "B"}), frozenset({"B", "C"}))  # 1 shared of 3
    0.3333333333333333
    """
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def label_stats(a: frozenset, b: frozenset) -> dict[str, tuple[int, int, int]]:
    """Per label (tp, fp, fn) for prediction ``a`` against reference ``b``.

    >>> sorted(label_stats(frozenset({"A", "B"}), frozenset({"B", "C"})).items())
    [('A', (0, 1, 0)), ('B', (1, 0, 0)), ('C', (0, 0, 1))]
    """
    out = {}
    for label in a:
        out[label] = (1, 0, 0) if label in b else (0, 1, 0)
    for label in b:
        if label not in a:
            out[label] = (0, 0, 1)
    return out


def _exact_from_stats(stats) -> float:
    for _tp, fp, fn in stats.values():
        if fp or fn:
            return 0.0
    return 1.0


def _jaccard_from_stats(stats) -> float:
    tp = union = 0
    for t, p, n in stats.values():
        tp += t
        union += t + p + n
    return tp / union if union else 1.0




METRICS = TagMetrics(default="exact", extract=extract, empty=EMPTY, label_stats=label_stats, metrics={
    "exact": exact,
    "jaccard": jaccard,
}, from_stats={"exact": _exact_from_stats, "jaccard": _jaccard_from_stats})
