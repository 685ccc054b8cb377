"""From a Label Studio label config to a strict answer schema, and from an answer to regions.

:func:`plan_for` parses a label config once (cached by the config string) into
a :class:`Plan`:

* ``plan.schema``: a JSON schema with one required property per supported
  control, in the subset that both OpenAI strict structured outputs and
  Anthropic structured outputs accept (every object closed with
  ``additionalProperties: false`` and all its properties required; no
  ``oneOf``/``allOf``/``uniqueItems``/numeric or length bounds; see
  :func:`strict_violations`).  It is built from the controls rather than from
  ``LabelInterface.to_json_schema()``, whose output strict mode rejects and
  which asks for character offsets (models get those wrong: spans are asked
  for as quoted text instead).
* ``plan.instructions``: how to answer each control, for the system prompt.
* ``plan.to_result(answer, data)``: the model's parsed JSON answer -> Label
  Studio result regions (plain dicts) + stats of what was dropped.

Example::

    >>> plan = plan_for('<View><Text name="text" value="$text"/>'
    ...                 '<Choices name="sentiment" toName="text">'
    ...                 '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
    >>> plan.schema["properties"]["sentiment"]["enum"]
    ['Positive', 'Negative']
    >>> regions, stats = plan.to_result({"sentiment": "Positive"}, {"text": "Great!"})
    >>> regions[0]["value"]
    {'choices': ['Positive']}

Supported control tags are the keys of :data:`backend.controls.HANDLERS`
(Choices, Labels, HyperTextLabels, TextArea, Rating, Number, Taxonomy,
RectangleLabels) on the object tags Text, HyperText and Image.  Other control
tags, and per-region controls, are skipped and listed in
``plan.skipped_controls``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from backend.controls import HANDLERS
from backend.controls.base import OBJECT_TAGS, Control, describe, dropped, new_stats, note
from backend.strict import strict_violations
from core import labelconfig
from core.errors import AllDroppedError, LabelConfigError, OutputError
from core.labelconfig import ControlInfo, LabelConfig, ObjectInfo

__all__ = ["SCHEMA_NAME", "ObjectInfo", "Plan", "build_plan", "plan_for", "strict_violations"]

SCHEMA_NAME = "label_studio_prediction"
_BY_LOWER = {tag.lower(): tag for tag in HANDLERS}


@dataclass(frozen=True)
class Plan:
    """Everything the prediction path needs from one label config.  Shared and cached: do not mutate."""

    config: str
    interface: Any  # label_studio_sdk.label_interface.LabelInterface
    controls: tuple[Control, ...]  # supported controls, config order
    schema: dict
    schema_name: str
    instructions: str
    objects: tuple[ObjectInfo, ...]  # Text/HyperText/Image objects, config order
    skipped_controls: tuple[str, ...] = field(default=())

    @property
    def object_fields(self) -> list[str]:
        """Task data keys the objects read, e.g. ``["text"]`` for ``<Text value="$text"/>``."""
        return list(dict.fromkeys(o.field for o in self.objects if o.field))

    @property
    def image_fields(self) -> list[str]:
        """Task data keys that hold images (read by ``<Image>`` objects)."""
        return list(dict.fromkeys(o.field for o in self.objects if o.field and o.tag == "Image"))

    def to_result(self, answer: Any, data: Mapping | None) -> tuple[list[dict], dict]:
        """Turn a parsed answer into Label Studio result regions.

        Returns ``(regions, stats)``: regions are dicts ready for
        ``{"result": regions}``; stats counts what was dropped
        (``spans_dropped``, ``labels_dropped``, ``boxes_dropped``,
        ``values_dropped``) and ``repaired`` (answers rewritten by a handler's
        documented repair rule), with human-readable ``notes``.

        Raises :class:`~core.errors.OutputError` (``invalid_output``) when the
        answer does not match the schema: not an object, a key missing (every
        control's key is required, even when its answer is "nothing"), or a
        value a handler rejects (an unknown single choice, a wrong type, a
        Rating of 2.5, a Number off its step or range...); and
        :class:`~core.errors.AllDroppedError` (``all_dropped``) when the answer
        named regions but every one was dropped, so the task gets no prediction
        and is tried again.  An answer of "nothing" for every control (empty
        lists, null, ``""``, a Rating of 0 where allowed) yields ``([], stats)``:
        an empty prediction, which is the right one.  Raises
        :class:`~core.errors.MissingDataError` when spans must be located in a
        task field the task lacks.

        Example: ``plan.to_result({"ner": [{"text": "Bob", "label": "PER",
        "occurrence": 0}]}, {"text": "Anna met Bob."})`` ->
        ``([{"from_name": "ner", "type": "labels", "value": {"start": 9, "end": 12,
        "text": "Bob", "labels": ["PER"]}, ...}], {"spans_dropped": 0, ...})``.

        >>> plan = plan_for('<View><Text name="text" value="$text"/>'
        ...                 '<Labels name="ner" toName="text"><Label value="PER"/></Labels></View>')
        >>> plan.to_result({}, {"text": "Anna met Bob."})
        Traceback (most recent call last):
        ...
        core.errors.OutputError: the answer has no key 'ner' (Labels 'ner'); every key is required: ner
        >>> try:
        ...     plan.to_result({"ner": [{"text": "Carol", "label": "PER", "occurrence": 0}]}, {"text": "Anna met Bob."})
        ... except OutputError as exc:
        ...     print(exc.reason, exc.stats["spans_dropped"])
        all_dropped 1
        >>> plan.to_result({"ner": []}, {"text": "Anna met Bob."})[0]
        []
        """
        self._check_keys(answer)
        data = data if isinstance(data, Mapping) else {}
        stats = new_stats()
        regions: list[dict] = []
        for control in self.controls:
            produced = HANDLERS[control.tag].to_regions(control, answer[control.name], data, stats)
            regions.extend(self._valid(control, produced, stats))
        known = {c.name for c in self.controls}
        extra = [k for k in answer if k not in known]
        if extra:
            note(stats, f"ignored unknown keys in the answer: {', '.join(map(str, extra[:10]))}")
        if not regions and dropped(stats):
            raise AllDroppedError(f"every region of the answer was dropped ({describe(stats)}); "
                                  "the task gets no prediction and will be tried again", stats=stats)
        return regions, stats

    def _check_keys(self, answer: Any) -> None:
        """OutputError unless ``answer`` is an object with every control's key."""
        expected = ", ".join(c.name for c in self.controls)
        if not isinstance(answer, dict):
            raise OutputError(f"the answer must be a JSON object with the keys {expected}; got {type(answer).__name__}")
        missing = [c for c in self.controls if c.name not in answer]
        if missing:
            names = ", ".join(f"{c.name!r} ({c.where()})" for c in missing)
            raise OutputError(f"the answer has no key {names}; every key is required: {expected}")

    def _valid(self, control: Control, produced: list[dict], stats: dict) -> list[dict]:
        """The regions Label Studio accepts; a safety net (handlers should never make others): the rest are
        dropped and counted in ``values_dropped``."""
        kept = []
        for reg in produced:
            errors = self.interface.validate_region(reg, return_errors=True)
            if errors:
                stats["values_dropped"] += 1
                note(stats, f"{control.name}: dropped a region Label Studio would reject: {'; '.join(errors)[:200]}")
            else:
                kept.append(reg)
        return kept


def _check_object(control: ControlInfo, tag: str, allowed: tuple[str, ...]) -> None:
    where = f"{tag} {control.name!r}"
    obj = control.object
    if obj is None:
        raise LabelConfigError(
            f"{where} has toName={control.attr.get('toName')!r}, which names no object tag in the config"
        )
    if obj.tag not in allowed:
        raise LabelConfigError(
            f"{where} points at the {obj.tag} {obj.name!r}; this backend pre-labels {tag} only on "
            f"{', '.join(allowed)} objects (remove the control, or point it at one of those)"
        )
    if obj.tag in ("Text", "HyperText") and obj.value_type == "url":
        raise LabelConfigError(
            f"the {obj.tag} {obj.name!r} has valueType=\"url\": the backend needs the text itself in the task data; "
            "import the text (not a link to it) or remove valueType=\"url\""
        )
    if obj.tag == "Image" and obj.attr.get("valueList"):
        raise LabelConfigError(
            f"the Image {obj.name!r} uses valueList (an image gallery), which this backend cannot pre-label"
        )


def _instructions(controls: list[Control]) -> str:
    lines = [
        "You pre-label one task for Label Studio, the way a careful human annotator would.",
        "Answer with one JSON object that has exactly these keys:",
    ]
    for c in controls:
        lines.append(f'- "{c.name}": {HANDLERS[c.tag].describe(c)}')
    if any(c.tag in ("Labels", "HyperTextLabels") for c in controls):
        lines.append(
            "For passages, copy the text exactly as it appears (same spelling, punctuation and case); "
            "never give character offsets."
        )
    if any(c.tag == "RectangleLabels" for c in controls):
        lines.append(
            "Box coordinates are percentages of the image width and height, measured from the top-left corner."
        )
    return "\n".join(lines)


def _supported(info: ControlInfo, skipped: list[str]) -> Control | None:
    """The handler-ready :class:`Control` for ``info``, or None (with the reason in ``skipped``)."""
    tag = _BY_LOWER.get(info.tag.lower())
    if tag is None:
        skipped.append(f"{info.tag} {info.name!r}: not supported (supported: {', '.join(HANDLERS)})")
        return None
    if info.per_region:
        skipped.append(f"{info.tag} {info.name!r}: per-region controls are not pre-labelled")
        return None
    handler = HANDLERS[tag]
    _check_object(info, tag, handler.OBJECTS)
    try:
        extra = handler.prepare(info) if hasattr(handler, "prepare") else {}
    except ValueError as exc:
        skipped.append(f"{info.tag} {info.name!r}: {exc}")
        return None
    return Control(info=info, tag=tag, extra=extra or {})


def _controls(lc: LabelConfig) -> tuple[list[Control], list[str]]:
    controls: list[Control] = []
    skipped: list[str] = []
    for info in lc.controls:
        control = _supported(info, skipped)
        if control is not None:
            controls.append(control)
    if not controls:
        why = f" Skipped: {'; '.join(skipped)}." if skipped else ""
        raise LabelConfigError(
            "the label config has no control this backend can pre-label; supported: "
            f"{', '.join(HANDLERS)} on {', '.join(OBJECT_TAGS)} objects.{why}"
        )
    return controls, skipped


def _schema(controls: list[Control]) -> dict:
    schema = {
        "type": "object",
        "properties": {c.name: HANDLERS[c.tag].schema(c) for c in controls},
        "required": [c.name for c in controls],
        "additionalProperties": False,
    }
    problems = strict_violations(schema)
    if problems:
        raise LabelConfigError(
            "the label config makes an answer schema that structured outputs would reject: "
            + "; ".join(problems[:5])
            + " (reduce the number of labels/choices)"
        )
    return schema


def build_plan(config: str) -> Plan:
    """Build a :class:`Plan` without the plan cache (see :func:`plan_for`)."""
    lc = labelconfig.validate(config)  # parsed and validated once per config (cached in core.labelconfig)
    controls, skipped = _controls(lc)
    return Plan(
        config=config,
        interface=lc.interface,
        controls=tuple(controls),
        schema=_schema(controls),
        schema_name=SCHEMA_NAME,
        instructions=_instructions(controls),
        objects=tuple(o for o in lc.objects if o.tag in OBJECT_TAGS),
        skipped_controls=tuple(skipped),
    )


def plan_for(label_config: str) -> Plan:
    """The :class:`Plan` for a label config, cached by the config's sha256 (a config that cannot be
    used is cached too, so Label Studio's repeated ``/setup`` calls get the same error at once).

    Raises :class:`~core.errors.LabelConfigError` with a fix-it message for
    an empty or malformed config, a config with no supported control, or a
    supported control pointing at an object other than Text/HyperText/Image
    (or at one it cannot label, e.g. Labels on an Image).
    """
    if not isinstance(label_config, str):
        return build_plan(label_config)  # raises the "empty" error
    return _plan_cached(label_config)


_plan_cached = labelconfig.cached_per_config(build_plan)  # a plan, or its error, once per config
