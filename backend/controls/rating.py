"""Rating: a whole number of stars from 1 to ``maxRating`` (default 5).

Schema: ``{"type": "integer"}`` (strict structured outputs accept no minimum/maximum,
so the range is in the description and checked here); ``0`` means "no rating"
unless the control is ``required="true"``.

Example::

    <Rating name="quality" toName="text" maxRating="10"/>
    answer 7  ->  [{"type": "rating", "value": {"rating": 7}, ...}]

Rules: a whole number given as ``7.0`` or ``"7"`` is read as 7; anything else that is
not a whole number (``2.5``, a list, ``true``) is an OutputError (``invalid_output``),
never rounded; so is a value outside 0..maxRating, or 0 (or null) for a required
rating.  0 or null for a rating that is not required means "cannot rate": no region.
"""
from __future__ import annotations

from backend.controls.base import Control, as_number, bad, region

TAG = "Rating"
OBJECTS = ("Text", "HyperText", "Image")


def max_rating(control: Control) -> int:
    """``maxRating`` as :mod:`core.labelconfig` reads it (default 5; ``"5.0"`` is 5; garbage is 5)."""
    return control.info.max_rating


def schema(control: Control) -> dict:
    return {"type": "integer", "description": describe(control)}


def describe(control: Control) -> str:
    top = max_rating(control)
    none = "" if control.required else "; 0 if you cannot rate it"
    return (f"rates the {control.object_tag} {control.to_name!r}: "
            f"a whole number from 1 (lowest) to {top} (highest){none}")


def to_regions(control: Control, value, data, stats) -> list[dict]:
    top = max_rating(control)
    if value is None:
        if control.required:
            raise bad(control, f"needs a rating from 1 to {top}")
        return []
    number = as_number(control, value, "the rating")
    if number != int(number):
        raise bad(control, f"the rating must be a whole number, got {value!r}")
    rating = int(number)
    if rating == 0 and not control.required:
        return []
    if not 1 <= rating <= top:
        raise bad(control, f"rating {rating} is outside 1..{top}")
    return [region(control, {"rating": rating})]
