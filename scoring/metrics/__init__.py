"""Metric registry: plain dicts, one small module per family.

``REGISTRY[tag][name]`` is a pure function ``metric(pred_value, ref_value, spec) -> float``
in [0, 1] over the values that ``EXTRACTORS[tag](regions, spec)`` makes of one side's
regions of a control.  ``DEFAULTS[tag]`` names the default metric of each tag.
``LABEL_STATS[tag](pred_value, ref_value) -> {label: (tp, fp, fn)}`` feeds per-label
precision/recall/F1; a metric with a ``from_stats`` attribute is computed from those
stats (same number, no second matching).  ``EMPTY_VALUE[tag]`` is the value of a side
with no region, for the label stats.

Adding a metric = a function in its family module + one line here.
"""
from __future__ import annotations

from . import boxes, choices, numeric, spans, taxonomy, textarea
from .spec import ControlSpec, ResultMismatch

REGISTRY: dict[str, dict] = {
    "Choices": {"exact": choices.exact, "jaccard": choices.jaccard},
    "Taxonomy": {"exact": choices.exact, "jaccard": choices.jaccard},
    "Labels": {"span_f1": spans.span_f1, "char_overlap": spans.char_overlap},
    "RectangleLabels": {"box_f1": boxes.box_f1, "mean_iou": boxes.mean_iou},
    "TextArea": {"levenshtein": textarea.levenshtein, "by_index": textarea.by_index, "token_set": textarea.token_set},
    "Rating": {"linear": numeric.linear, "exact": numeric.exact},
    "Number": {"linear": numeric.linear, "exact": numeric.exact},
}

DEFAULTS: dict[str, str] = {
    "Choices": "exact",
    "Taxonomy": "exact",
    "Labels": "span_f1",
    "RectangleLabels": "box_f1",
    "TextArea": "levenshtein",
    "Rating": "linear",
    "Number": "linear",
}

EXTRACTORS: dict = {
    "Choices": choices.extract,
    "Taxonomy": taxonomy.extract,
    "Labels": spans.extract,
    "RectangleLabels": boxes.extract,
    "TextArea": textarea.extract,
    "Rating": numeric.extract,
    "Number": numeric.extract,
}

EMPTY_VALUE: dict = {
    "Choices": choices.EMPTY,
    "Taxonomy": taxonomy.EMPTY,
    "Labels": spans.EMPTY,
    "RectangleLabels": boxes.EMPTY,
    "TextArea": textarea.EMPTY,
    "Rating": numeric.EMPTY,
    "Number": numeric.EMPTY,
}

LABEL_STATS: dict = {
    "Choices": choices.label_stats,
    "Labels": spans.label_stats,
    "RectangleLabels": boxes.label_stats,
}

__all__ = ["REGISTRY", "DEFAULTS", "EXTRACTORS", "EMPTY_VALUE", "LABEL_STATS", "ControlSpec", "ResultMismatch"]
