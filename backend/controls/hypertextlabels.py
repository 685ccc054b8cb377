"""HyperTextLabels: label passages of a HyperText object.

The same as :mod:`backend.controls.labels` (quote + label + occurrence, offsets
found by :mod:`backend.spans`), with the labels stored under
``value["hypertextlabels"]`` as Label Studio expects for this tag.

Example (HyperText ``<p>Anna met <b>Bob</b></p>``)::

    answer [{"text": "Bob", "label": "PER", "occurrence": 0}]
    -> [{"type": "hypertextlabels", "value": {"start": "/p[1]/b[1]/text()[1]", "startOffset": 0,
         "end": "/p[1]/b[1]/text()[1]", "endOffset": 3, "globalOffsets": {"start": 9, "end": 12},
         "text": "Bob", "hypertextlabels": ["PER"]}, ...}]
"""
from __future__ import annotations

from backend.controls import labels as _labels
from backend.controls.base import Control

TAG = "HyperTextLabels"
OBJECTS = ("HyperText",)
prepare = _labels.prepare
schema = _labels.schema
describe = _labels.describe


def to_regions(control: Control, value, data, stats) -> list[dict]:
    return _labels.to_regions(control, value, data, stats, label_key="hypertextlabels")
