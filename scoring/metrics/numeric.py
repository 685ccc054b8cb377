"""Rating and Number: the first rating / number of each side.

Default ``linear``: 1 - |a - b| / range when the control's range is known
(maxRating - 1 for Rating, max - min for Number with both bounds), clipped at 0;
else exact match.  Alternative ``exact``.
"""
from __future__ import annotations

from .spec import ControlSpec, ResultMismatch, TagMetrics, is_number

EMPTY = None
_KEY = {"Rating": "rating", "Number": "number"}


def extract(regions: list[dict], spec: ControlSpec) -> float:
    """The first region's ``value.rating`` (Rating) or ``value.number`` (Number).

    >>> extract([{"value": {"rating": 4}}, {"value": {"rating": 1}}], ControlSpec("q", "Rating"))
    4
    """
    key = _KEY.get(spec.tag, "number")
    try:
        x = regions[0]["value"][key]
    except (KeyError, TypeError, IndexError):
        raise ResultMismatch(f"a region of '{spec.name}' has no value.{key}") from None
    if not is_number(x):
        raise ResultMismatch(f"value.{key} of '{spec.name}' is {x!r}, not a number")
    return x


def exact(a: float, b: float, spec: ControlSpec | None = None) -> float:
    """1.0 when equal, else 0.0.

    >>> exact(3, 3.0)
    1.0
    """
    return 1.0 if a == b else 0.0


def linear(a: float, b: float, spec: ControlSpec | None = None) -> float:
    """1 - |a - b| / range (at least 0); exact match when the range is unknown.

    >>> linear(2, 5, ControlSpec("quality", "Rating", range=4.0))   # 1 - 3/4
    0.25
    >>> linear(2, 5, ControlSpec("n", "Number"))   # no range: exact match
    0.0
    """
    r = spec.range if spec is not None else None
    if not r:
        return 1.0 if a == b else 0.0
    return max(0.0, 1.0 - abs(a - b) / r)


METRICS = TagMetrics(default="linear", extract=extract, empty=EMPTY, metrics={
    "linear": linear,
    "exact": exact,
})
