"""TextArea: free text about the object (a transcription, a summary, a correction).

Schema: ``{"type": "string"}``; an empty string means "no answer" and yields no region.

Example::

    <TextArea name="summary" toName="text"/>
    answer "Short summary."  ->  [{"type": "textarea", "value": {"text": ["Short summary."]}, ...}]
"""
from __future__ import annotations

from backend.controls.base import Control, bad, note, region

TAG = "TextArea"
OBJECTS = ("Text", "HyperText", "Image")


def schema(control: Control) -> dict:
    return {"type": "string", "description": describe(control)}


def describe(control: Control) -> str:
    hint = control.attr.get("placeholder")
    extra = f" (the field's hint: {hint!r})" if hint else ""
    return (f"free text about the {control.object_tag} {control.to_name!r}{extra}; "
            "an empty string if there is nothing to write")


def to_regions(control: Control, value, data, stats) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "\n".join(v for v in value if v.strip())
    if not isinstance(value, str):
        raise bad(control, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        if control.required:
            note(stats, f"{control.name}: required text left empty by the model")
        return []
    return [region(control, {"text": [value.strip()]})]
