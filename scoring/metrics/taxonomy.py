"""Taxonomy: the set of selected paths, each path a tuple (root ... leaf).

Compared with the same set metrics as Choices (``exact``, ``jaccard``).
"""
from __future__ import annotations

from . import choices
from .spec import ControlSpec, ResultMismatch, TagMetrics

EMPTY: frozenset = frozenset()


def extract(regions: list[dict], spec: ControlSpec) -> frozenset:
    """Union over regions of ``value.taxonomy`` paths, as tuples.

    >>> sorted(extract([{"value": {"taxonomy": [["Animal", "Cat"], ["Plant"]]}}], None))
    [('Animal', 'Cat'), ('Plant',)]
    """
    acc: set = set()
    for r in regions:
        try:
            paths = r["value"]["taxonomy"]
            for p in paths:
                if not isinstance(p, list) or not all(type(x) is str for x in p):
                    raise TypeError
                acc.add(tuple(p))
        except (KeyError, TypeError):
            raise ResultMismatch(
                f"a region of '{getattr(spec, 'name', '?')}' has no list of paths (lists of strings) in value.taxonomy"
            ) from None
    return frozenset(acc)


METRICS = TagMetrics(default="exact", extract=extract, empty=EMPTY, metrics={
    "exact": choices.exact,
    "jaccard": choices.jaccard,
})
