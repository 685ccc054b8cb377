"""Labels: label passages of a Text or HyperText object (named entities, spans).

The model is never asked for character offsets.  It quotes each passage
verbatim, names its label and, when the passage occurs more than once, says
which occurrence it means (1 = first; 0 = every occurrence).  Offsets are then
found with :mod:`backend.spans` (exact, then whitespace/case-normalised);
a passage that cannot be found is dropped and counted in
``stats["spans_dropped"]``, an unknown label in ``stats["labels_dropped"]``.

Schema::

    {"type": "array", "items": {"type": "object", "additionalProperties": false,
      "required": ["text", "label", "occurrence"],
      "properties": {"text": {"type": "string"},
                     "label": {"type": "string", "enum": [labels]},
                     "occurrence": {"type": "integer"}}}}

Example (Text ``"Anna met Bob."``)::

    answer [{"text": "Bob", "label": "PER", "occurrence": 0}]
    -> [{"type": "labels", "value": {"start": 9, "end": 12, "text": "Bob", "labels": ["PER"]}, ...}]

Over a HyperText object the value carries Label Studio's xpath form
(``start``/``end`` xpaths of the text nodes, ``startOffset``/``endOffset`` in
them, and ``globalOffsets`` over the shown text), e.g. for ``<p>Anna met <b>Bob</b></p>``:
``{"start": "/p[1]/b[1]/text()[1]", "startOffset": 0, "end": "/p[1]/b[1]/text()[1]",
"endOffset": 3, "globalOffsets": {"start": 9, "end": 12}, "text": "Bob", "labels": ["PER"]}``.
With ``choice="multiple"`` labels given to the same passage are merged into one region.
"""
from __future__ import annotations

from backend.controls.base import (
    Control,
    allowed,
    bad,
    expect_list,
    label_of,
    list_of_objects,
    note,
    object_text,
    prepare_labels,
    region,
)
from backend.spans import HtmlText, SpanFinder, html_text

TAG = "Labels"
OBJECTS = ("Text", "HyperText")
LABEL_KEY = "labels"


prepare = prepare_labels


def schema(control: Control) -> dict:
    return list_of_objects(describe(control), {
        "text": {"type": "string", "description": "the passage, copied verbatim from the text"},
        "label": {"type": "string", "enum": list(control.labels)},
        "occurrence": {
            "type": "integer",
            "description": "which occurrence of this exact passage is meant (1 = first); 0 = every occurrence",
        },
    })


def describe(control: Control) -> str:
    source = "the text shown (without HTML tags)" if control.object_tag == "HyperText" else "the text"
    return (
        f"labels passages of the {control.object_tag} {control.to_name!r}: a list of "
        f"{{text, label, occurrence}} items, one per passage; `text` is copied verbatim from "
        f"{source} (no character offsets), `label` is one of: {allowed(control.labels)}; "
        f"`occurrence` picks one occurrence of a repeated passage (1 = first, 0 = all); "
        f"an empty list if nothing applies"
    )


def _items(control: Control, value) -> list[tuple[str, str, int]]:
    out = []
    for item in expect_list(control, value, "{text, label, occurrence} objects"):
        if not isinstance(item, dict):
            raise bad(control, f"each item must be an object with text and label, got {item!r}")
        text, label, occ = item.get("text"), item.get("label"), item.get("occurrence", 0)
        if not isinstance(text, str) or not isinstance(label, str):
            raise bad(control, f"each item needs a string `text` and `label`, got {item!r}")
        if occ is None:
            occ = 0
        if isinstance(occ, float) and occ.is_integer():
            occ = int(occ)
        if isinstance(occ, bool) or not isinstance(occ, int):
            raise bad(control, f"`occurrence` must be a whole number, got {occ!r}")
        out.append((text, label, occ))
    return out


Span = tuple[int, int]


def _locate(control: Control, items, finder: SpanFinder | HtmlText, stats) -> list[tuple[Span, str]]:
    """(span, label) of every passage found, in answer order, each pair once; unknown labels and
    passages that are not in the text are dropped and counted."""
    found: dict[tuple[Span, str], None] = {}  # an ordered set
    for quote, answer_label, occ in items:
        label = label_of(control, answer_label, stats)
        if label is None:
            continue
        spans = finder.find(quote, occ)
        if not spans:
            stats["spans_dropped"] += 1
            note(stats, f"{control.name}: passage not found in the text: {quote[:80]!r}")
        found.update(dict.fromkeys((span, label) for span in spans))
    return list(found)


def to_regions(control: Control, value, data, stats, label_key: str = LABEL_KEY) -> list[dict]:
    items = _items(control, value)
    if not items:
        return []
    source = object_text(control, data)
    index = html_text(source) if control.object_tag == "HyperText" else None
    found = _locate(control, items, index or SpanFinder(source), stats)
    pairs: list[tuple[Span, list[str]]] = []
    if control.multiple:  # labels of one passage merge into one region
        merged: dict[Span, list[str]] = {}
        for span, label in found:
            merged.setdefault(span, []).append(label)
        pairs = list(merged.items())
    else:  # one region per (passage, label), in answer order
        pairs = [(span, [label]) for span, label in found]
    shown = index.text if index is not None else source
    regions = []
    for i, ((start, end), labels) in enumerate(pairs):
        if index is not None:
            where = index.xpath_range(start, end)
            if where is None:
                stats["spans_dropped"] += 1
                continue
        else:
            where = {"start": start, "end": end}
        regions.append(region(control, {**where, "text": shown[start:end], label_key: labels}, i))
    return regions
