"""Control-tag handlers: a plain registry, tag name -> handler module.

Each module handles one Label Studio control tag end to end (schema, prompt
text, answer -> regions); see :mod:`backend.controls.base` for the interface.
Tags not listed here are skipped by :func:`backend.schema.plan_for` and named in
``plan.skipped_controls``.
"""
from __future__ import annotations

from backend.controls import (
    choices,
    hypertextlabels,
    labels,
    number,
    rating,
    rectanglelabels,
    taxonomy,
    textarea,
)

HANDLERS = {
    m.TAG: m
    for m in (choices, labels, hypertextlabels, textarea, rating, number, taxonomy, rectanglelabels)
}
