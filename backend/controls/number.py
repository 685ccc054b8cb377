"""Number: one number about the object, within the tag's ``min``/``max`` when given.

Schema: ``{"type": "number"}``, or ``{"type": ["number", "null"]}`` (null = no answer)
unless ``required="true"``.  Strict structured outputs accept no minimum/maximum,
so the bounds are in the description and checked here.

Example::

    <Number name="age" toName="text" min="0" max="120"/>
    answer 42  ->  [{"type": "number", "value": {"number": 42}, ...}]

Rules (no guessing: a value the tag would not allow is never rounded to one it would):

* ``step`` (default 1, as in Label Studio) sets the allowed values: ``min`` (0 when
  absent) plus a whole number of steps, as the tag's number input steps.  A value
  off that grid (2.5 people for a default Number; 0.25 with ``step="0.1"``) is an
  OutputError (``invalid_output``); only float noise within a millionth of a step
  is snapped to the grid (``0.30000000000000004`` -> ``0.3``).
* a value outside [min, max] is an OutputError;
* a number sent as a string (``"42"``) is read as that number; any other type is an OutputError;
* null means "no answer" (no region) unless the tag is ``required="true"``.
"""
from __future__ import annotations

import math

from backend.controls.base import Control, as_number, bad, region

TAG = "Number"
OBJECTS = ("Text", "HyperText", "Image")


def _bounds(control: Control) -> tuple[float | None, float | None]:
    """``min`` and ``max`` as :mod:`core.labelconfig` reads them (None when absent or not a number)."""
    return control.info.min, control.info.max


def _grid(control: Control) -> tuple[float, float]:
    """(base, step) of the allowed values: ``min`` (else 0) plus whole steps (``step`` else 1)."""
    step = control.info.step
    lo = control.info.min
    return (lo if lo is not None else 0.0), (step if step is not None and step > 0 else 1.0)


def _integral(control: Control) -> bool:
    base, step = _grid(control)
    return base.is_integer() and step.is_integer()


def _on_grid(control: Control, number: float) -> float:
    """``number`` snapped to the step grid when within float noise of it, else OutputError."""
    base, step = _grid(control)
    steps = (number - base) / step
    whole = round(steps)
    if abs(steps - whole) > 1e-6:
        below, above = base + math.floor(steps) * step, base + math.ceil(steps) * step
        raise bad(control, f"{number:g} is not an allowed value: the Number's step is {step:g} from {base:g} "
                           f"(the nearest allowed values are {below:g} and {above:g})")
    return round(base + whole * step, 10)


def schema(control: Control) -> dict:
    kind = "integer" if _integral(control) else "number"
    return {"type": kind if control.required else [kind, "null"], "description": describe(control)}


def describe(control: Control) -> str:
    lo, hi = _bounds(control)
    base, step = _grid(control)
    kind = "a whole number" if _integral(control) else f"a number in steps of {step:g} from {base:g}"
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
    number = _on_grid(control, number)
    out = int(number) if number.is_integer() and _integral(control) else number
    return [region(control, {"number": out})]
