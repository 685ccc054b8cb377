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

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from backend.controls import HANDLERS
from backend.controls.base import OBJECT_TAGS, Control, PlanContext, canonical_object, new_stats, note, object_field
from core.errors import LabelConfigError, OutputError

SCHEMA_NAME = "label_studio_prediction"
_BY_LOWER = {tag.lower(): tag for tag in HANDLERS}


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    tag: str  # "Text" | "HyperText" | "Image"
    field: str | None  # task data key (None for a literal value)


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
        ``values_dropped``) with human-readable ``notes``.  Raises
        :class:`~core.errors.OutputError` when the answer is unusable (not an
        object, a single choice with an unknown label, a value of the wrong
        type, a required answer missing) and
        :class:`~core.errors.MissingDataError` when spans must be located in
        a task field the task lacks.

        Example: ``plan.to_result({"ner": [{"text": "Bob", "label": "PER",
        "occurrence": 0}]}, {"text": "Anna met Bob."})`` ->
        ``([{"from_name": "ner", "type": "labels", "value": {"start": 9, "end": 12,
        "text": "Bob", "labels": ["PER"]}, ...}], {"spans_dropped": 0, ...})``.
        """
        if not isinstance(answer, dict):
            raise OutputError(
                f"the answer must be a JSON object with the keys {', '.join(c.name for c in self.controls)}; "
                f"got {type(answer).__name__}"
            )
        data = data if isinstance(data, Mapping) else {}
        stats = new_stats()
        regions: list[dict] = []
        for control in self.controls:
            handler = HANDLERS[control.tag]
            missing = control.name not in answer
            try:
                produced = handler.to_regions(control, answer.get(control.name), data, stats)
            except OutputError as exc:
                if missing:
                    raise OutputError(
                        f"the answer has no key {control.name!r} ({control.where()}); expected keys: "
                        f"{', '.join(c.name for c in self.controls)}"
                    ) from exc
                raise
            if missing:
                note(stats, f"the answer has no key {control.name!r}; treated as no answer")
            for reg in produced:
                errors = self.interface.validate_region(reg, return_errors=True)
                if errors:  # a safety net: handlers should never get here
                    stats["values_dropped"] += 1
                    note(stats, f"{control.name}: dropped a region Label Studio would reject: {'; '.join(errors)[:200]}")
                else:
                    regions.append(reg)
        known = {c.name for c in self.controls}
        extra = [k for k in answer if k not in known]
        if extra:
            note(stats, f"ignored unknown keys in the answer: {', '.join(map(str, extra[:10]))}")
        return regions, stats


def _parse(config: str):
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("the label config is empty; set one in the project's Settings -> Labeling Interface")
    try:
        interface = LabelInterface(config)
    except Exception as exc:  # lxml syntax errors, pydantic errors on odd attributes
        raise LabelConfigError(f"the label config cannot be parsed: {exc}; fix the XML in Settings -> Labeling Interface") from None
    try:
        interface.validate()
    except Exception as exc:
        raise LabelConfigError(f"the label config is not valid for Label Studio: {exc}") from None
    # the SDK's own checks only see double-quoted attributes: check names on the parsed tree
    seen: set[str] = set()
    for el in interface._tree.iter():
        name = el.get("name") if isinstance(el.tag, str) else None
        if name is None:
            continue
        if name in seen:
            raise LabelConfigError(f"the label config has non-unique names: {name!r} is used twice; every name= must be unique")
        seen.add(name)
    return interface


def _objects(interface) -> tuple[ObjectInfo, ...]:
    out = []
    for obj in interface.objects or []:
        tag = canonical_object(obj.tag)
        if tag not in OBJECT_TAGS:
            continue
        out.append(ObjectInfo(name=obj.name, tag=tag, field=object_field(obj)))
    return tuple(out)


def _check_object(control_tag: str, sdk_control, obj, allowed: tuple[str, ...]) -> None:
    where = f"{control_tag} {sdk_control.name!r}"
    if obj is None:
        raise LabelConfigError(f"{where} has toName={sdk_control.attr.get('toName')!r}, which names no object tag in the config")
    tag = canonical_object(obj.tag)
    if tag not in allowed:
        raise LabelConfigError(
            f"{where} points at the {obj.tag} {obj.name!r}; this backend pre-labels {control_tag} only on "
            f"{', '.join(allowed)} objects (remove the control, or point it at one of those)"
        )
    if tag in ("Text", "HyperText") and str(obj.attr.get("valueType", "")).lower() == "url":
        raise LabelConfigError(
            f"the {obj.tag} {obj.name!r} has valueType=\"url\": the backend needs the text itself in the task data; "
            "import the text (not a link to it) or remove valueType=\"url\""
        )
    if tag == "Image" and obj.attr.get("valueList"):
        raise LabelConfigError(f"the Image {obj.name!r} uses valueList (an image gallery), which this backend cannot pre-label")


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
        lines.append("Box coordinates are percentages of the image width and height, measured from the top-left corner.")
    return "\n".join(lines)


def build_plan(config: str) -> Plan:
    """Build a :class:`Plan` without the cache (see :func:`plan_for`)."""
    interface = _parse(config)
    ctx = PlanContext(interface=interface, config=config)
    controls: list[Control] = []
    skipped: list[str] = []
    for sdk in interface.controls or []:
        tag = _BY_LOWER.get(sdk.tag.lower())
        if tag is None:
            skipped.append(f"{sdk.tag} {sdk.name!r}: not supported (supported: {', '.join(HANDLERS)})")
            continue
        if str(sdk.attr.get("perRegion", "")).lower() == "true" or sdk.attr.get("perItem") == "true":
            skipped.append(f"{sdk.tag} {sdk.name!r}: per-region controls are not pre-labelled")
            continue
        handler = HANDLERS[tag]
        to_name = sdk.to_name[0] if sdk.to_name else None
        obj = sdk.find_object_by_name(to_name) if to_name and sdk.objects else None
        _check_object(tag, sdk, obj, handler.OBJECTS)
        try:
            extra = handler.prepare(sdk, ctx) if hasattr(handler, "prepare") else {}
        except ValueError as exc:
            skipped.append(f"{sdk.tag} {sdk.name!r}: {exc}")
            continue
        controls.append(
            Control(
                sdk=sdk,
                tag=tag,
                name=sdk.name,
                to_name=to_name,
                object=obj,
                labels=list(sdk.labels or []),
                attr=dict(sdk.attr or {}),
                extra=extra or {},
            )
        )
    if not controls:
        why = f" Skipped: {'; '.join(skipped)}." if skipped else ""
        raise LabelConfigError(
            "the label config has no control this backend can pre-label; supported: "
            f"{', '.join(HANDLERS)} on {', '.join(OBJECT_TAGS)} objects.{why}"
        )
    schema = {
        "type": "object",
        "properties": {c.name: HANDLERS[c.tag].schema(c, ctx) for c in controls},
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
    return Plan(
        config=config,
        interface=interface,
        controls=tuple(controls),
        schema=schema,
        schema_name=SCHEMA_NAME,
        instructions=_instructions(controls),
        objects=_objects(interface),
        skipped_controls=tuple(skipped),
    )


@functools.lru_cache(maxsize=64)
def plan_for(label_config: str) -> Plan:
    """The :class:`Plan` for a label config, cached by the config string.

    Raises :class:`~core.errors.LabelConfigError` with a fix-it message for
    an empty or malformed config, a config with no supported control, or a
    supported control pointing at an object other than Text/HyperText/Image
    (or at one it cannot label, e.g. Labels on an Image).
    """
    return build_plan(label_config)


# --------------------------------------------------------------------------
# strict-mode rules
# --------------------------------------------------------------------------
# The intersection of what OpenAI strict structured outputs ("Supported
# schemas") and Anthropic structured outputs ("JSON Schema limitations")
# accept.  Anthropic rejects numeric, string-length and array bounds other
# than minItems 0/1; OpenAI rejects the composition keywords; both need closed
# objects with every property required.
_FORBIDDEN = {
    "oneOf", "allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
    "patternProperties", "unevaluatedProperties", "unevaluatedItems", "propertyNames",
    "minProperties", "maxProperties", "uniqueItems", "contains", "minContains", "maxContains",
    "prefixItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "maxItems", "pattern", "default", "$ref", "$defs", "definitions",
}
_FORMATS = {"date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
MAX_UNIONS = 16  # Anthropic: parameters using anyOf or type arrays
MAX_STRING_CHARS = 120_000


def strict_violations(schema: dict) -> list[str]:
    """Every way ``schema`` breaks the strict structured-output rules; ``[]`` when it is fine.

    Checks: the root is an object (not ``anyOf``); every object lists
    ``properties``, has ``additionalProperties: false`` and requires all its
    properties; arrays have ``items`` and ``minItems`` of at most 1; no
    unsupported keyword (``oneOf``, ``allOf``, ``uniqueItems``, ``minimum``,
    ``maxLength``, ``pattern``, ...); a type list is only ``[T, "null"]``;
    enums hold primitives; and the size limits (5,000 properties, 10 levels
    of nesting, 1,000 enum values, 15,000 characters in an enum of more than
    250 values, 120,000 characters of names and enum values, 16 unions).

    Example::

        >>> strict_violations({"type": "object", "properties": {"a": {"type": "string"}}})
        ['$: object must set additionalProperties to false', "$: object must list every property in required (missing: ['a'])"]
    """
    problems: list[str] = []
    totals = {"properties": 0, "enum": 0, "chars": 0, "unions": 0}

    def walk(node: Any, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            problems.append(f"{path}: a schema must be an object, got {type(node).__name__}")
            return
        for key in node:
            if key in _FORBIDDEN:
                problems.append(f"{path}: unsupported keyword {key!r}")
        if "format" in node and node["format"] not in _FORMATS:
            problems.append(f"{path}: unsupported format {node['format']!r}")
        if "anyOf" in node:
            totals["unions"] += 1
            if not isinstance(node["anyOf"], list) or not node["anyOf"]:
                problems.append(f"{path}: anyOf must be a non-empty list")
            else:
                for i, sub in enumerate(node["anyOf"]):
                    walk(sub, f"{path}.anyOf[{i}]", depth)
            return
        types = node.get("type")
        if types is None:
            if "enum" not in node and "const" not in node:
                problems.append(f"{path}: every schema needs a type")
            types = []
        if isinstance(types, list):
            totals["unions"] += 1
            if not (len(types) == 2 and "null" in types and all(t in _TYPES for t in types)):
                problems.append(f"{path}: a type list may only be [<type>, \"null\"], got {types}")
            types = [t for t in types if t != "null"]
        else:
            if types not in _TYPES:
                problems.append(f"{path}: unknown type {types!r}")
            types = [types]
        if "enum" in node:
            enum = node["enum"]
            if not isinstance(enum, list) or not enum:
                problems.append(f"{path}: enum must be a non-empty list")
            else:
                if any(isinstance(v, (dict, list)) for v in enum):
                    problems.append(f"{path}: enum values must be strings, numbers, booleans or null")
                totals["enum"] += len(enum)
                chars = sum(len(v) for v in enum if isinstance(v, str))
                totals["chars"] += chars
                if len(enum) > 250 and chars > 15_000:
                    problems.append(f"{path}: an enum of {len(enum)} values may hold at most 15,000 characters, has {chars}")
                if len(set(map(json.dumps, enum))) != len(enum):
                    problems.append(f"{path}: enum values must be unique")
        if "object" in types:
            if depth >= MAX_DEPTH:
                problems.append(f"{path}: nested more than {MAX_DEPTH} object levels")
            props = node.get("properties")
            if not isinstance(props, dict):
                problems.append(f"{path}: object must list its properties")
                props = {}
            if node.get("additionalProperties") is not False:
                problems.append(f"{path}: object must set additionalProperties to false")
            required = node.get("required", [])
            missing = [k for k in props if k not in required]
            if missing:
                problems.append(f"{path}: object must list every property in required (missing: {missing})")
            unknown = [k for k in required if k not in props]
            if unknown:
                problems.append(f"{path}: required names unknown properties {unknown}")
            totals["properties"] += len(props)
            for key, sub in props.items():
                totals["chars"] += len(key)
                walk(sub, f"{path}.{key}", depth + 1)
        if "array" in types:
            if "items" not in node:
                problems.append(f"{path}: array must define items")
            else:
                walk(node["items"], f"{path}[]", depth)
            if node.get("minItems", 0) not in (0, 1):
                problems.append(f"{path}: minItems may only be 0 or 1")

    if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
        problems.append("$: the root must be a plain object schema (not anyOf)")
    walk(schema, "$", 0)
    if totals["properties"] > MAX_PROPERTIES:
        problems.append(f"$: {totals['properties']} object properties in all; the limit is {MAX_PROPERTIES}")
    if totals["enum"] > MAX_ENUM_VALUES:
        problems.append(f"$: {totals['enum']} enum values in all; the limit is {MAX_ENUM_VALUES}")
    if totals["chars"] > MAX_STRING_CHARS:
        problems.append(f"$: {totals['chars']} characters of property names and enum values; the limit is {MAX_STRING_CHARS}")
    if totals["unions"] > MAX_UNIONS:
        problems.append(f"$: {totals['unions']} nullable/anyOf schemas; the limit is {MAX_UNIONS}")
    return problems
