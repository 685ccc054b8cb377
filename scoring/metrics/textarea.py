"""TextArea: the texts of each side, in order (all regions of the control).

The embedding / LLM-judge similarity named in the issue needs a provider and
the network, so it is not a pure metric here; plug one in as a custom metric
(``scoring.yaml``: ``metric: package.module:function``).
"""
from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

from .spec import ControlSpec, ResultMismatch, TagMetrics

EMPTY: tuple = ()
_TOKEN = re.compile(r"\w+")


def extract(regions: list[dict], spec: ControlSpec) -> tuple:
    """Texts of all regions in order; a plain string counts as one text.

    >>> extract([{"value": {"text": ["a", "b"]}}, {"value": {"text": "c"}}], None)
    ('a', 'b', 'c')
    """
    out: list = []
    for r in regions:
        try:
            t = r["value"]["text"]
        except (KeyError, TypeError):
            raise ResultMismatch(f"a region of '{getattr(spec, 'name', '?')}' has no value.text") from None
        if type(t) is str:
            out.append(t)
        elif isinstance(t, list) and all(type(x) is str for x in t):
            out.extend(t)
        else:
            raise ResultMismatch(f"value.text of '{getattr(spec, 'name', '?')}' is not a list of strings")
    return tuple(out)


def levenshtein(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """1 - d / max(len) on each side's texts joined with a newline (rapidfuzz).

    >>> levenshtein(("kitten",), ("sitting",))   # d = 3, max len 7
    0.5714285714285714
    """
    return Levenshtein.normalized_similarity("\n".join(a), "\n".join(b))


def by_index(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """Texts paired by position, each pair scored by normalised Levenshtein; an
    unpaired text scores 0; the mean over max(len(a), len(b)) texts.

    >>> by_index(("abcd", "x"), ("abcf",))   # (0.75 + 0) / 2
    0.375
    """
    n = max(len(a), len(b))
    if n == 0:
        return 1.0
    sim = Levenshtein.normalized_similarity
    return sum(sim(x, y) for x, y in zip(a, b, strict=False)) / n


def tokens(texts: tuple) -> set:
    """Lower-cased word tokens (``\\w+``) of all texts."""
    out: set = set()
    for t in texts:
        out.update(_TOKEN.findall(t.lower()))
    return out


def token_set(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """Token-set similarity: Jaccard of the lower-cased word sets; no words on either side gives 1.0.

    >>> token_set(("The cat sat.",), ("the cat ran",))   # {the, cat} of {the, cat, sat, ran}
    0.5
    """
    ta, tb = tokens(a), tokens(b)
    union = len(ta | tb)
    return len(ta & tb) / union if union else 1.0


METRICS = TagMetrics(default="levenshtein", extract=extract, empty=EMPTY, metrics={
    "levenshtein": levenshtein,
    "by_index": by_index,
    "token_set": token_set,
})
