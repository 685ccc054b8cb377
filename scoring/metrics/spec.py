"""What a metric knows about the control it scores, and the error a bad region raises.

``ControlSpec`` is built once per label config by the engine (never per task), so
metric functions stay plain and fast: ``metric(pred_value, ref_value, spec) -> float``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from core.labelconfig import ControlInfo


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

    @classmethod
    def of(cls, info: ControlInfo) -> ControlSpec:
        """The spec of a control as :mod:`core.labelconfig` read it (the reading the backend uses too).

        >>> from core.labelconfig import parse
        >>> lc = parse('<View><Text name="t" value="$t"/><Number name="n" toName="t" min="1" max="11"/>'
        ...            '<Rating name="r" toName="t" maxRating="5.0"/></View>')
        >>> ControlSpec.of(lc.control("n")).range, ControlSpec.of(lc.control("r")).range
        (10.0, 4.0)
        """
        return cls(name=info.name, tag=info.tag, labels=info.labels, multiple=info.multiple, range=value_range(info))


def value_range(info: ControlInfo) -> float | None:
    """Rating: maxRating - 1; Number: max - min when both bounds are set; else (or when not positive) None."""
    if info.tag == "Rating":
        top = float(info.max_rating - 1)
        return top if top > 0 else None
    if info.tag == "Number" and info.min is not None and info.max is not None:
        span = info.max - info.min
        return span if span > 0 else None
    return None


@dataclass(frozen=True)
class TagMetrics:
    """Everything scoring knows about one control tag: the registry's record (one per tag).

    ``extract(regions, spec)`` turns one side's regions of a control into a value;
    ``metrics`` maps each metric name to a pure ``metric(pred_value, ref_value, spec) -> float``
    in [0, 1] over those values, ``default`` naming the one used unless scoring.yaml says
    otherwise; ``empty`` is the value of a side with no region; ``label_stats(pred_value,
    ref_value) -> {label: (tp, fp, fn)}`` (optional) feeds the pooled per-label
    precision/recall/F1; ``from_stats[name](stats)`` computes metric ``name`` from those
    stats (same number, no second matching) when the tag has label stats.
    """

    default: str
    metrics: Mapping[str, Callable[..., float]]
    extract: Callable[[list, Any], Any]
    empty: Any = None
    label_stats: Callable[[Any, Any], dict] | None = None
    from_stats: Mapping[str, Callable[[dict], float]] = field(default_factory=dict)

    def __post_init__(self):
        if self.default not in self.metrics:
            raise ValueError(f"default metric {self.default!r} is not one of {', '.join(self.metrics)}")
        if set(self.from_stats) - set(self.metrics) or (self.from_stats and self.label_stats is None):
            raise ValueError("from_stats needs label_stats and may only name metrics of this tag")


def is_number(x) -> bool:
    """True for a finite int/float that is not a bool."""
    return (type(x) is int or type(x) is float) and x == x and x not in (float("inf"), float("-inf"))
