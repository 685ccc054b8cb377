"""Choices: classify the whole object (single choice, or several with ``choice="multiple"``).

Schema: single -> ``{"type": "string", "enum": [labels]}`` (one label is required);
multiple -> ``{"type": "array", "items": {"type": "string", "enum": [labels]}}``
(an empty list means "none of these").

Example (single)::

    <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
    answer "Positive"  ->  [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                             "value": {"choices": ["Positive"]}, ...}]

An unknown label is an OutputError for a single choice; in a multiple choice it
is dropped and counted in ``stats["labels_dropped"]``.
"""
from __future__ import annotations

from backend.controls.base import Control, allowed, bad, expect_list, label_of, match_label, region
from core.labelconfig import ControlInfo

TAG = "Choices"
OBJECTS = ("Text", "HyperText", "Image")


def prepare(info: ControlInfo) -> dict:
    if info.dynamic or not info.labels:
        # value="$options": the choices come from each task, unknown when the schema is built
        raise ValueError("its choices come from the task data (dynamic choices) or it has no <Choice> children")
    return {}


def schema(control: Control) -> dict:
    enum = {"type": "string", "enum": list(control.labels)}
    if control.multiple:
        return {"type": "array", "items": enum, "description": describe(control)}
    return {**enum, "description": describe(control)}


def describe(control: Control) -> str:
    about = f"classifies the {control.object_tag} {control.to_name!r}"
    if control.multiple:
        return f"{about}: a list of every label that applies (an empty list if none), from: {allowed(control.labels)}"
    return f"{about}: exactly one label, one of: {allowed(control.labels)}"


def to_regions(control: Control, value, data, stats) -> list[dict]:
    if not control.multiple:
        if value is None:
            raise bad(control, f"needs one label; allowed: {allowed(control.labels)}")
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        label = match_label(control.labels, value)
        if label is None:
            raise bad(control, f"unknown label {value!r} for control {control.name!r}; "
                               f"allowed: {allowed(control.labels)}")
        return [region(control, {"choices": [label]})]
    if isinstance(value, str):
        value = [value]
    chosen: list[str] = []
    for item in expect_list(control, value, "labels"):
        label = label_of(control, item, stats)
        if label is not None and label not in chosen:
            chosen.append(label)
    if not chosen:
        return []
    return [region(control, {"choices": chosen})]
