"""Number: one number about the object, within the tag's ``min``/``max`` when given.

Schema: ``{"type": "number"}``, or ``{"type": ["number", "null"]}`` (null = no answer)
unless ``required="true"``.  Strict structured outputs accept no minimum/maximum,
so the bounds are in the description and checked here.

Example::

    <Number name="age" toName="text" min="0" max="120"/>
    answer 42  ->  [{"type": "number", "value": {"number": 42}, ...}]

A value outside [min, max] is an OutputError.
"""
from __future__ import annotations

from backend.controls.base import Control, as_number, bad, region

TAG = "Number"
OBJECTS = ("Text", "HyperText", "Image")


def _bounds(control: Control) -> tuple[float | None, float | None]:
    """``min`` and ``max`` as :mod:`core.labelconfig` reads them (None when absent or not a number)."""
    return control.info.min, control.info.max


def _integral(control: Control) -> bool:
    step = control.info.step
    return step is None or step.is_integer()


def schema(control: Control) -> dict:
    kind = "integer" if _integral(control) else "number"
    return {"type": kind if control.required else [kind, "null"], "description": describe(control)}


def describe(control: Control) -> str:
    lo, hi = _bounds(control)
    kind = "a whole number" if _integral(control) else "a number"
    rng = ""
    if lo is not None and hi is not None:
        rng = f" from {lo:g} to {hi:g}"
    elif lo is not None:
        rng = f" of at least {lo:g}"
    elif hi is not None:
        rng = f" of at most {hi:g}"
    none = "" if control.required else "; null if it cannot be told"
    return f"{kind}{rng} about the {control.object_tag} {control.to_name!r}{none}"


def to_regions(control: Control, value, data, stats) -> list[dict]:
    if value is None:
        if control.required:
            raise bad(control, "needs a number")
        return []
    number = as_number(control, value, "the answer")
    lo, hi = _bounds(control)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        low, high = lo if lo is not None else "-inf", hi if hi is not None else "inf"
        raise bad(control, f"{number:g} is outside the allowed range [{low}, {high}]")
    out = int(number) if number.is_integer() and _integral(control) else number
    return [region(control, {"number": out})]
