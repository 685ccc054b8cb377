"""Shared helpers for the control-tag handlers in this package.

A handler module (one per Label Studio control tag) exposes::

    TAG = "Choices"                 # the control tag it handles
    OBJECTS = ("Text", ...)         # object tags it can point at
    prepare(info) -> dict                  # optional: check/derive extra config once per plan
                                           # (raise ValueError to skip the control, with the reason)
    schema(control) -> dict                # strict JSON schema of the answer for this control
    describe(control) -> str               # how to answer, for the system prompt
    to_regions(control, value, data, stats) -> list[dict]   # answer -> Label Studio regions

``info`` is the control as :mod:`core.labelconfig` read it; ``control`` is a
:class:`Control`: that reading plus whatever ``prepare`` returned.  ``value`` is the model's answer for
this control (``None`` when the answer has no key for it); ``data`` is the task
data; ``stats`` is the dict :func:`new_stats` makes, updated in place
(dropped spans/labels/boxes are counted, never turned into errors).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.errors import MissingDataError, OutputError
from core.labelconfig import ControlInfo, ObjectInfo

OBJECT_TAGS = ("Text", "HyperText", "Image")


@dataclass
class Control:
    """One supported control of a label config, as the handlers see it.

    Every attribute comes from the shared reading of the config (:mod:`core.labelconfig`), so the
    backend and the scoring side agree on labels, ``choice="multiple"``, ``maxRating``, ...
    """

    info: ControlInfo
    tag: str  # canonical tag name, e.g. "Choices" (a key of HANDLERS)
    extra: dict = field(default_factory=dict)  # what the handler's ``prepare`` returned

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def to_name(self) -> str:
        """The object this control's regions point at."""
        return self.info.to_name or ""

    @property
    def object(self) -> ObjectInfo:
        assert self.info.object is not None  # build_plan rejects a control without its object
        return self.info.object

    @property
    def labels(self) -> list[str]:
        """Alias or value of each Label/Choice, in config order."""
        return list(self.info.labels)

    @property
    def attr(self) -> Mapping[str, Any]:
        return self.info.attr

    @property
    def object_tag(self) -> str:
        return self.object.tag

    @property
    def object_field(self) -> str | None:
        """The task data key the object reads (``text`` for ``value="$text"``)."""
        return self.object.field

    @property
    def required(self) -> bool:
        return self.info.required

    @property
    def multiple(self) -> bool:
        return self.info.multiple

    def where(self) -> str:
        return f"{self.tag} {self.name!r}"


DROP_KINDS = ("spans", "labels", "boxes", "values")  # stats["<kind>_dropped"]; the ledger's ``dropped`` keys
NOTES_KEPT = 5          # notes kept per task in the ledger ...
NOTE_CHARS = 160        # ... each cut to this many characters


def new_stats() -> dict:
    """The stats dict ``to_regions`` updates: counts of what was dropped and repaired, and notes."""
    return {"spans_dropped": 0, "labels_dropped": 0, "boxes_dropped": 0, "values_dropped": 0, "repaired": 0,
            "notes": []}


def note(stats: dict, message: str) -> None:
    if len(stats["notes"]) < 50:
        stats["notes"].append(message)


def repaired(stats: dict, message: str) -> None:
    """Count one answer rewritten by a documented repair rule (a guess), and say what it became."""
    stats["repaired"] = stats.get("repaired", 0) + 1
    note(stats, message)


def dropped(stats: dict) -> dict[str, int]:
    """``{kind: count}`` of what was dropped, non-zero kinds only.

    >>> s = new_stats(); s["spans_dropped"] = 2
    >>> dropped(s)
    {'spans': 2}
    """
    return {k: int(stats.get(f"{k}_dropped", 0)) for k in DROP_KINDS if stats.get(f"{k}_dropped")}


def quality(stats: dict | None) -> dict:
    """What the usage ledger keeps about one task's answer: ``dropped`` (:func:`dropped`),
    ``repaired`` (count) and the first :data:`NOTES_KEPT` notes, each at most :data:`NOTE_CHARS` long.

    >>> s = new_stats(); repaired(s, "topic: path ['Optics'] guessed as ['Science', 'Physics', 'Optics']")
    >>> quality(s)["repaired"], quality(s)["dropped"]
    (1, {})
    """
    stats = stats or {}
    notes = [str(n)[:NOTE_CHARS] for n in (stats.get("notes") or [])[:NOTES_KEPT]]
    return {"dropped": dropped(stats), "repaired": int(stats.get("repaired", 0)), "notes": notes}


def describe(stats: dict | None) -> str:
    """One line naming what was dropped and repaired ('' when nothing was).

    >>> s = new_stats(); s["labels_dropped"] = 1; note(s, "ner: dropped label 'X'")
    >>> describe(s)
    "dropped 1 labels; ner: dropped label 'X'"
    """
    q = quality(stats)
    parts = [f"dropped {', '.join(f'{n} {k}' for k, n in q['dropped'].items())}"] if q["dropped"] else []
    if q["repaired"]:
        parts.append(f"repaired {q['repaired']}")
    if not parts:
        return ""
    return "; ".join([" and ".join(parts), *q["notes"]])


def region(control: Control, value: dict, index: int = 0) -> dict:
    """A Label Studio result region (a plain dict) with a deterministic id.

    Example: ``region(c, {"choices": ["Positive"]})`` ->
    ``{"id": "3f2a...", "from_name": "sentiment", "to_name": "text",
    "type": "choices", "value": {"choices": ["Positive"]}, "origin": "prediction"}``
    """
    rtype = control.tag.lower()
    body = json.dumps([control.name, control.to_name, rtype, value, index], sort_keys=True, ensure_ascii=False)
    rid = hashlib.sha1(body.encode()).hexdigest()[:10]
    return {
        "id": rid,
        "from_name": control.name,
        "to_name": control.to_name,
        "type": rtype,
        "value": value,
        "origin": "prediction",
    }


def match_label(labels: list[str], answer: Any) -> str | None:
    """The configured label ``answer`` names: exact, else a unique case/space-insensitive match.

    Example: ``match_label(["Positive", "Negative"], " positive")`` -> ``"Positive"``.
    """
    if not isinstance(answer, str):
        return None
    if answer in labels:
        return answer
    key = " ".join(answer.split()).casefold()
    hits = [lab for lab in labels if " ".join(lab.split()).casefold() == key]
    return hits[0] if len(hits) == 1 else None


def allowed(labels: list[str], limit: int = 30) -> str:
    shown = ", ".join(json.dumps(x, ensure_ascii=False) for x in labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")


def bad(control: Control, message: str) -> OutputError:
    return OutputError(f"{control.where()}: {message}")


def as_number(control: Control, value: Any, what: str) -> float:
    """``value`` as a finite float, else OutputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise bad(control, f"{what} must be a number, got {value!r}") from None
        else:
            raise bad(control, f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise bad(control, f"{what} must be a finite number, got {value}")
    return value


def expect_list(control: Control, value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(control, f"expected a list of {what}, got {type(value).__name__}")
    return value


def lookup(data: Mapping, key: str) -> Any:
    """``data[key]``, or a dotted path (``meta.title``) into nested dicts; KeyError if absent."""
    if key in data:
        return data[key]
    cur: Any = data
    for part in key.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(key)
    return cur


def object_text(control: Control, data: Mapping) -> str:
    """The task text the control's object shows; MissingDataError if the task lacks it."""
    key = control.object_field
    if key is None:
        return str(control.object.value or "")
    try:
        value = lookup(data, key)
    except KeyError:
        raise MissingDataError(
            f"{control.where()} labels the {control.object_tag} {control.to_name!r}, which reads task field "
            f"{key!r}, but the task has no such field; it has: {', '.join(sorted(map(str, data))) or '(none)'}"
        ) from None
    if value is None:
        raise MissingDataError(f"task field {key!r} (read by {control.object_tag} {control.to_name!r}) is empty")
    return value if isinstance(value, str) else str(value)


def prepare_labels(info: ControlInfo) -> dict:
    """``prepare`` for tags whose answers pick from ``<Label>`` children (Labels, RectangleLabels)."""
    if not info.labels:
        raise ValueError("it has no <Label> children")
    return {}


def label_of(control: Control, answer: Any, stats: dict, what: str = "label") -> str | None:
    """The configured label ``answer`` names; an unknown one is counted in ``labels_dropped`` and noted."""
    label = match_label(control.labels, answer)
    if label is None:
        stats["labels_dropped"] += 1
        note(stats, f"{control.name}: dropped {what} {answer!r}")
    return label


def list_of_objects(description: str, properties: dict) -> dict:
    """The strict schema of a list of closed objects with every property required (spans, boxes).

    >>> list_of_objects("boxes", {"x": {"type": "number"}})["items"]["required"]
    ['x']
    """
    return {
        "type": "array",
        "description": description,
        "items": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        },
    }
