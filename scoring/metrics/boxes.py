"""RectangleLabels: boxes in percent of the image, matched like spans with box IoU >= 0.5.

Item: (label, x, y, width, height, rotation, original_width, original_height).
Label Studio rotates a box (degrees) about its top-left corner in pixels; when
both boxes are unrotated the IoU is computed directly (percent units give the same
IoU), otherwise with shapely polygons in pixels (in percent units when the image
size is not in the result).
"""
from __future__ import annotations

import math
from typing import Any

from .matching import group_by_label as _group
from .matching import matched_label_stats, max_matching
from .spans import f1_from_stats
from .spec import ControlSpec, ResultMismatch, TagMetrics, is_number

EMPTY: tuple = ()


def extract(regions: list[dict], spec: ControlSpec) -> tuple:
    """All (label, x, y, w, h, rotation, ow, oh) items; one per label of each box.

    >>> extract([{"original_width": 200, "original_height": 100,
    ...           "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["Car"]}}], None)
    (('Car', 10, 20, 30, 40, 0, 200, 100),)
    """
    out = []
    name = getattr(spec, "name", "?")
    for r in regions:
        try:
            v = r["value"]
            x, y, w, h, labels = v["x"], v["y"], v["width"], v["height"], v["rectanglelabels"]
            rot = v.get("rotation", 0) or 0
        except (KeyError, TypeError, AttributeError):
            raise ResultMismatch(
                f"a box region of '{name}' needs value.x, y, width, height and rectanglelabels"
            ) from None
        if not all(is_number(t) for t in (x, y, w, h, rot)) or w < 0 or h < 0:
            raise ResultMismatch(f"a box region of '{name}' has a coordinate that is not a number (or a negative size)")
        if not isinstance(labels, list) or not all(type(t) is str for t in labels):
            raise ResultMismatch(f"a box region of '{name}' needs a list of strings in value.rectanglelabels")
        ow: Any = r.get("original_width")
        oh: Any = r.get("original_height")
        if not (is_number(ow) and is_number(oh) and ow > 0 and oh > 0):
            ow = oh = None
        for label in labels:
            out.append((label, x, y, w, h, rot, ow, oh))
    return tuple(out)


def _corners(b, sx: float, sy: float):
    _, x, y, w, h, rot, _, _ = b
    x, y, w, h = x * sx, y * sy, w * sx, h * sy
    t = math.radians(rot)
    c, s = math.cos(t), math.sin(t)
    return [(x, y), (x + w * c, y + w * s), (x + w * c - h * s, y + w * s + h * c), (x - h * s, y + h * c)]


def box_iou(a, b) -> float:
    """IoU of two box items.

    >>> box_iou(("A", 0, 0, 10, 10, 0, None, None), ("A", 5, 0, 10, 10, 0, None, None))  # 50 / 150
    0.3333333333333333
    >>> round(box_iou(("A", 0, 0, 10, 10, 90, None, None), ("A", -10, 0, 10, 10, 0, None, None)), 6)
    1.0
    """
    if a[1:6] == b[1:6]:
        return 1.0   # same geometry (also for zero-size boxes and sizes that float sums would lose)
    if not a[5] and not b[5]:
        iw = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        ih = min(a[2] + a[4], b[2] + b[4]) - max(a[2], b[2])
        inter = iw * ih if iw > 0 and ih > 0 else 0.0
        union = a[3] * a[4] + b[3] * b[4] - inter
    else:
        from shapely.geometry import Polygon

        if a[6] and b[6] and (a[6], a[7]) == (b[6], b[7]):
            sx, sy = a[6] / 100.0, a[7] / 100.0
        else:
            sx = sy = 1.0
        pa, pb = Polygon(_corners(a, sx, sy)), Polygon(_corners(b, sx, sy))
        inter = pa.intersection(pb).area
        union = pa.area + pb.area - inter
    if union <= 0:
        return 0.0
    return min(1.0, inter / union)


def label_stats(a: tuple, b: tuple) -> dict[str, tuple[int, int, int]]:
    """Per label (tp, fp, fn) of the maximum IoU >= 0.5 matching.

    >>> label_stats((("Car", 0, 0, 10, 10, 0, None, None),), (("Car", 1, 0, 10, 10, 0, None, None),))
    {'Car': (1, 0, 0)}
    """
    return matched_label_stats(a, b, box_iou)


def box_f1(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """F1 of matched boxes: 2 * matched / (n_a + n_b).

    >>> car = ("Car", 0, 0, 10, 10, 0, None, None)
    >>> box_f1((car, ("Car", 50, 50, 10, 10, 0, None, None)), (car,))   # 2*1 / (2+1)
    0.6666666666666666
    """
    return f1_from_stats(label_stats(a, b))




def mean_iou(a: tuple, b: tuple, spec: ControlSpec | None = None) -> float:
    """Mean IoU of the matched boxes (same matching as ``box_f1``); no match gives 0.0,
    two empty sides give 1.0.

    >>> mean_iou((("Car", 0, 0, 10, 10, 0, None, None),), (("Car", 0, 0, 10, 8, 0, None, None),))   # 80 / 100
    0.8
    """
    if not a and not b:
        return 1.0
    ga, gb = _group(a), _group(b)
    count, total = 0, 0.0
    for label, xs in ga.items():
        ys = gb.get(label)
        if ys:
            c, t = max_matching(xs, ys, box_iou)
            count += c
            total += t
    return total / count if count else 0.0


METRICS = TagMetrics(default="box_f1", extract=extract, empty=EMPTY, label_stats=label_stats, metrics={
    "box_f1": box_f1,
    "mean_iou": mean_iou,
}, from_stats={"box_f1": f1_from_stats})
