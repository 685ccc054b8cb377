"""RectangleLabels: labelled boxes on an Image, in percent of the image size.

Schema::

    {"type": "array", "items": {"type": "object", "additionalProperties": false,
      "required": ["label", "x", "y", "width", "height"],
      "properties": {"label": {"type": "string", "enum": [labels]},
                     "x": {"type": "number"}, "y": {"type": "number"},
                     "width": {"type": "number"}, "height": {"type": "number"}}}}

``x``/``y`` is the top-left corner; all four are percentages (0-100) of the
image width/height, which is what Label Studio stores.  Boxes are clipped to
the image (a repair rule: counted in ``stats["repaired"]`` and noted); a box with no
area left is dropped and counted in ``stats["boxes_dropped"]``, an unknown label in
``stats["labels_dropped"]``.  A coordinate that is not a number is an OutputError.

Example::

    answer [{"label": "Car", "x": 10, "y": 20, "width": 30, "height": 15}]
    -> [{"type": "rectanglelabels", "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 15.0,
         "rotation": 0, "rectanglelabels": ["Car"]}, ...}]
"""
from __future__ import annotations

from backend.controls.base import (
    Control,
    allowed,
    as_number,
    bad,
    expect_list,
    label_of,
    list_of_objects,
    note,
    prepare_labels,
    region,
    repaired,
)

TAG = "RectangleLabels"
OBJECTS = ("Image",)
_MIN_SIZE = 1e-6


prepare = prepare_labels


def schema(control: Control) -> dict:
    pct = lambda what: {"type": "number", "description": what}  # noqa: E731
    return list_of_objects(describe(control), {
        "label": {"type": "string", "enum": list(control.labels)},
        "x": pct("left edge, percent of the image width (0-100)"),
        "y": pct("top edge, percent of the image height (0-100)"),
        "width": pct("box width, percent of the image width"),
        "height": pct("box height, percent of the image height"),
    })


def describe(control: Control) -> str:
    return (
        f"boxes around objects in the Image {control.to_name!r}: a list of {{label, x, y, width, height}} items, "
        f"coordinates in percent of the image size (x, y = top-left corner, 0-100); label one of: "
        f"{allowed(control.labels)}; an empty list if there is nothing to box"
    )


def _clip(v: float) -> float:
    return min(100.0, max(0.0, v))


def to_regions(control: Control, value, data, stats) -> list[dict]:
    regions = []
    for i, item in enumerate(expect_list(control, value, "boxes")):
        if not isinstance(item, dict):
            raise bad(control, f"each box must be an object with label, x, y, width, height; got {item!r}")
        label = label_of(control, item.get("label"), stats, what="box with unknown label")
        if label is None:
            continue
        x, y, w, h = (as_number(control, item.get(k), k) for k in ("x", "y", "width", "height"))
        x0, y0 = _clip(x), _clip(y)
        x1, y1 = _clip(x + w), _clip(y + h)
        if x1 - x0 < _MIN_SIZE or y1 - y0 < _MIN_SIZE:
            stats["boxes_dropped"] += 1
            note(stats, f"{control.name}: dropped a box with no area inside the image: {item!r}")
            continue
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            repaired(stats, f"{control.name}: clipped a box to the image: {item!r}")
        value = {
            "x": round(x0, 4),
            "y": round(y0, 4),
            "width": round(x1 - x0, 4),
            "height": round(y1 - y0, 4),
            "rotation": 0,
            "rectanglelabels": [label],
        }
        regions.append(region(control, value, i))
    return regions
