"""What a metric knows about the control it scores, and the error a bad region raises.

``ControlSpec`` is built once per label config by the engine (never per task), so
metric functions stay plain and fast: ``metric(pred_value, ref_value, spec) -> float``.
"""
from __future__ import annotations

from dataclasses import dataclass


class ResultMismatch(ValueError):
    """A region does not fit its control (wrong value keys, bad numbers).

    The engine skips the task and lists this message as the reason."""


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """One control tag of the label config, reduced to what scoring needs.

    >>> ControlSpec(name="quality", tag="Rating", range=4.0).range
    4.0
    """

    name: str
    tag: str                          # canonical tag type: "Choices", "Labels", "TextArea", ...
    labels: tuple[str, ...] = ()      # declared labels / choices, config order
    multiple: bool = False            # Choices choice="multiple"
    range: float | None = None        # Rating: maxRating - 1; Number: max - min (both bounds); else None


def is_number(x) -> bool:
    """True for a finite int/float that is not a bool."""
    return (type(x) is int or type(x) is float) and x == x and x not in (float("inf"), float("-inf"))
