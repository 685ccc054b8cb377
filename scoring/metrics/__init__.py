"""Metric registry: a plain dict, control tag -> one :class:`~scoring.metrics.spec.TagMetrics` record.

Each family module (``choices``, ``spans``, ...) defines its record as ``METRICS``: the
default metric, the alternatives (name -> pure function ``metric(pred_value, ref_value,
spec) -> float`` in [0, 1]), the extractor that turns one side's regions into a value, the
value of an empty side, and the pooled per-label statistics when the tag has them.

Adding a metric = a function in its family module + one line in that module's ``METRICS``.
Adding a tag = one module with its ``METRICS`` + one line here.

>>> REGISTRY["Choices"].default, sorted(REGISTRY["Choices"].metrics)
('exact', ['exact', 'jaccard'])
>>> REGISTRY["Rating"].metrics["linear"](2, 5, ControlSpec("q", "Rating", range=4.0))
0.25
"""
from __future__ import annotations

from . import boxes, choices, numeric, spans, taxonomy, textarea
from .spec import ControlSpec, ResultMismatch, TagMetrics

REGISTRY: dict[str, TagMetrics] = {
    "Choices": choices.METRICS,
    "Taxonomy": taxonomy.METRICS,
    "Labels": spans.METRICS,
    "RectangleLabels": boxes.METRICS,
    "TextArea": textarea.METRICS,
    "Rating": numeric.METRICS,
    "Number": numeric.METRICS,
}

__all__ = ["REGISTRY", "ControlSpec", "ResultMismatch", "TagMetrics"]
