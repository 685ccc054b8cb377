"""The one reading of a Label Studio label config, shared by the backend and the scoring side.

:func:`parse` reads a config once with label-studio-sdk's ``LabelInterface`` (cached by the
config's sha256) into a :class:`LabelConfig`: its controls (:class:`ControlInfo`) and object
tags (:class:`ObjectInfo`), with every attribute either side needs read here and only here:

* ``labels``: the declared labels (``alias`` when set, else ``value``), config order;
* ``multiple``: ``choice="multiple"`` (any case);
* ``required``: ``required="true"`` (any case);
* ``max_rating``: Rating's ``maxRating``, default 5; ``"5.0"`` reads as 5; anything that is not
  a finite number of at least 1 reads as the default;
* ``min``/``max``/``step``: Number's bounds, ``None`` when absent or not a finite number;
* ``taxonomy``: the Taxonomy tree (paths from the root, leaves, node names);
* ``attr``: the raw attributes, for anything tag-specific.

:func:`validate` adds Label Studio's own validation of the config (the backend wants it; the
scoring side reads configs Label Studio already accepted).  Both raise
:class:`~core.errors.LabelConfigError` with a one-line message.

Example::

    >>> lc = parse('<View><Text name="t" value="$text"/>'
    ...            '<Choices name="c" toName="t" choice="Multiple"><Choice value="A"/><Choice value="B" alias="b"/>'
    ...            '</Choices><Rating name="r" toName="t" maxRating="5.0"/></View>')
    >>> c = lc.control("c")
    >>> c.tag, c.labels, c.multiple, c.object.field
    ('Choices', ('A', 'b'), True, 'text')
    >>> lc.control("r").max_rating
    5
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from core.errors import LabelConfigError

T = TypeVar("T")

DEFAULT_MAX_RATING = 5


@dataclass(frozen=True)
class ObjectInfo:
    """One object tag (Text, HyperText, Image, ...)."""

    name: str
    tag: str  # canonical tag name, e.g. "HyperText"
    field: str | None  # the task data key it reads ("text" for value="$text"); None for a literal value
    value: str  # the raw value attribute
    attr: Mapping[str, Any]

    @property
    def value_type(self) -> str:
        """``valueType``, lower-cased (``"url"`` when the task holds a link)."""
        return str(self.attr.get("valueType", "")).lower()


@dataclass(frozen=True)
class TaxonomyTree:
    """A Taxonomy's ``<Choice>`` tree: every node as its path from the root, config order."""

    paths: tuple[tuple[str, ...], ...]
    leaves: frozenset[tuple[str, ...]]
    names: tuple[str, ...]  # distinct node names, first-seen order


@dataclass(frozen=True)
class ControlInfo:
    """One control tag with its attributes read once."""

    name: str
    tag: str  # canonical tag name, e.g. "Choices"
    to_name: str | None  # the first object it labels
    object: ObjectInfo | None
    labels: tuple[str, ...]
    multiple: bool
    required: bool
    per_region: bool  # perRegion="true" / perItem="true"
    dynamic: bool  # choices come from the task data (value="$options")
    max_rating: int  # Rating only (DEFAULT_MAX_RATING elsewhere)
    min: float | None  # Number only
    max: float | None
    step: float | None
    taxonomy: TaxonomyTree | None  # Taxonomy only
    attr: Mapping[str, Any]
    sdk: Any  # label_studio_sdk ControlTag, for what the SDK does with it


@dataclass(frozen=True)
class LabelConfig:
    """A parsed label config.  Shared and cached: do not mutate."""

    config: str
    interface: Any  # label_studio_sdk LabelInterface
    controls: tuple[ControlInfo, ...]
    objects: tuple[ObjectInfo, ...]

    def control(self, name: str) -> ControlInfo:
        for c in self.controls:
            if c.name == name:
                return c
        raise KeyError(name)


# ----------------------------------------------------------------- attribute readers (the one place each is read)

def is_true(value: Any) -> bool:
    """``"true"`` in any case.

    >>> is_true("True"), is_true("false"), is_true(None)
    (True, False, False)
    """
    return str(value).strip().lower() == "true"


def read_multiple(attr: Mapping) -> bool:
    """``choice="multiple"``, any case.

    >>> read_multiple({"choice": "Multiple"}), read_multiple({"choice": "single"}), read_multiple({})
    (True, False, False)
    """
    return str(attr.get("choice", "")).strip().lower() == "multiple"


def read_number(value: Any) -> float | None:
    """A finite float, else None.

    >>> read_number("2.5"), read_number(" 3 "), read_number("nan"), read_number("x"), read_number(None)
    (2.5, 3.0, None, None, None)
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_max_rating(attr: Mapping) -> int:
    """Rating's ``maxRating``: a whole number of at least 1; absent or garbage -> 5.

    >>> [read_max_rating({"maxRating": v}) for v in ("10", "5.0", "7.9", "0", "-2", "ten", "inf")]
    [10, 5, 7, 5, 5, 5, 5]
    >>> read_max_rating({})
    5
    """
    number = read_number(attr.get("maxRating"))
    if number is None or number < 1:
        return DEFAULT_MAX_RATING
    return int(number)


# ----------------------------------------------------------------- parsing

def config_key(config: str) -> str:
    """The cache key of a config: its sha256."""
    return hashlib.sha256(config.encode("utf-8", "surrogatepass")).hexdigest()


def cached_per_config(build: Callable[[str], T]) -> Callable[[str], T]:
    """``build(config)``, computed once per config (by its sha256, 64 configs kept) and its
    :class:`LabelConfigError` cached too, so a bad config fails fast every time it is sent again
    (Label Studio calls ``/setup`` repeatedly).  ``.cache_info()`` is the cache's.

    >>> calls = []
    >>> twice = cached_per_config(lambda c: calls.append(c) or len(c))
    >>> twice("<View/>"), twice("<View/>"), len(calls)
    (7, 7, 1)
    """
    @functools.lru_cache(maxsize=64)
    def outcome(key: str, config: str) -> T | LabelConfigError:
        try:
            return build(config)
        except LabelConfigError as exc:
            return exc

    def cached(config: str) -> T:
        done = outcome(config_key(config), config)
        if isinstance(done, LabelConfigError):
            raise LabelConfigError(str(done))
        return done

    cached.cache_info = outcome.cache_info  # type: ignore[attr-defined]
    return cached


def one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def parse(config: str) -> LabelConfig:
    """The :class:`LabelConfig` of ``config``, parsed once and cached by its sha256.

    Raises :class:`~core.errors.LabelConfigError` (one line) for an empty config, XML that does
    not parse, or a ``name=`` used twice.
    """
    if not isinstance(config, str) or not config.strip():
        raise LabelConfigError("the label config is empty; set one in the project's Settings -> Labeling Interface")
    return _parse_cached(config)


def _read(config: str) -> LabelConfig:
    from label_studio_sdk.label_interface import LabelInterface

    try:
        interface = LabelInterface(config)
        sdk_controls = list(interface.controls or ())
        sdk_objects = list(interface.objects or ())
    except Exception as exc:  # lxml syntax errors, pydantic errors on odd attributes
        raise LabelConfigError(
            f"the label config cannot be parsed: {one_line(exc)}; fix the XML in Settings -> Labeling Interface"
        ) from None
    elements = _named_elements(interface)
    objects = {o.name: _object_info(o) for o in sdk_objects}
    controls = tuple(_control_info(c, objects, elements) for c in sdk_controls)
    return LabelConfig(config=config, interface=interface, controls=controls, objects=tuple(objects.values()))


_parse_cached = cached_per_config(_read)  # the parsed config, or its error, once per config


def _named_elements(interface) -> dict[str, Any]:
    """name -> element of the parsed tree; a name used twice is an error (the SDK's own check only
    sees double-quoted attributes)."""
    out: dict[str, Any] = {}
    for el in interface._tree.iter():
        name = el.get("name") if isinstance(el.tag, str) else None
        if name is None:
            continue
        if name in out:
            raise LabelConfigError(
                f"the label config has non-unique names: {name!r} is used twice; every name= must be unique"
            )
        out[name] = el
    return out


def canonical_tag(tag_obj) -> str:
    """The SDK class's tag name (``ChoicesTag`` -> ``"Choices"``) whatever the case in the XML."""
    cls = type(tag_obj).__name__
    if cls.endswith("Tag") and cls not in ("ControlTag", "ObjectTag"):
        return cls[:-3]
    return str(tag_obj.tag)


def _object_info(obj) -> ObjectInfo:
    field = obj.value_name if obj.value and obj.value_is_variable else None
    return ObjectInfo(name=obj.name, tag=canonical_tag(obj), field=field, value=str(obj.value or ""),
                      attr=dict(obj.attr or {}))


def _control_info(sdk, objects: dict[str, ObjectInfo], elements: dict[str, Any]) -> ControlInfo:
    attr = dict(sdk.attr or {})
    tag = canonical_tag(sdk)
    to_name = sdk.to_name[0] if sdk.to_name else None
    return ControlInfo(
        name=sdk.name,
        tag=tag,
        to_name=to_name,
        object=objects.get(to_name) if to_name else None,
        labels=tuple(str(x) for x in (sdk.labels or ())),
        multiple=read_multiple(attr),
        required=is_true(attr.get("required")),
        per_region=is_true(attr.get("perRegion")) or is_true(attr.get("perItem")),
        dynamic=bool(getattr(sdk, "dynamic_value", False)),
        max_rating=read_max_rating(attr) if tag == "Rating" else DEFAULT_MAX_RATING,
        min=read_number(attr.get("min")),
        max=read_number(attr.get("max")),
        step=read_number(attr.get("step")),
        taxonomy=_taxonomy(elements.get(sdk.name)) if tag == "Taxonomy" else None,
        attr=attr,
        sdk=sdk,
    )


# ----------------------------------------------------------------- taxonomy

def _children(el) -> list[tuple[str, Any]]:
    """(name, element) of the direct <Choice> descendants of ``el`` (through any <View> wrappers)."""
    out, seen = [], set()
    for child in el:
        if not isinstance(child.tag, str):
            continue
        found = [(child.get("alias") or child.get("value"), child)] if child.tag == "Choice" else _children(child)
        for key, sub in found:
            if key is not None and key not in seen:
                seen.add(key)
                out.append((key, sub))
    return out


def _taxonomy(el) -> TaxonomyTree:
    paths: list[tuple[str, ...]] = []
    leaves: set[tuple[str, ...]] = set()

    def walk(node, prefix: tuple[str, ...]) -> None:
        for key, child in _children(node):
            path = prefix + (key,)
            paths.append(path)
            if not _children(child):
                leaves.add(path)
            walk(child, path)

    if el is not None:
        walk(el, ())
    return TaxonomyTree(paths=tuple(paths), leaves=frozenset(leaves), names=tuple(dict.fromkeys(p[-1] for p in paths)))


# ----------------------------------------------------------------- Label Studio's validation

def validate(config: str) -> LabelConfig:
    """:func:`parse`, plus Label Studio's own checks of the config (cached too).

    Raises :class:`~core.errors.LabelConfigError` with the SDK's reason on one line.
    """
    lc = parse(config)
    problem = _validate_cached(config_key(config), config)
    if problem is not None:
        raise LabelConfigError(problem)
    return lc


@functools.lru_cache(maxsize=64)
def _validate_cached(key: str, config: str) -> str | None:
    """The one-line reason Label Studio rejects the config, or None (cached either way)."""
    try:
        _ls_validate(parse(config).interface, config)
    except Exception as exc:
        return f"the label config is not valid for Label Studio: {one_line(exc)}"
    return None


def _ls_validate(interface, config: str) -> None:
    """``LabelInterface.validate()``, with its JSON-schema pass run on a shape-reduced copy.

    The SDK validates the config, turned into JSON, against a schema that only constrains
    types and required keys; with thousands of ``<Choice>`` children that pass takes seconds
    (2-4 s for 40,000).  Siblings of the same shape (same keys, same value types) validate
    alike, so one of each is checked: the same verdict in milliseconds.  When the reduced copy
    fails, the SDK's full pass runs for its exact message.
    """
    import jsonschema
    from label_studio_sdk.label_interface import interface as sdk

    schema = sdk._LABEL_CONFIG_SCHEMA_DATA
    if not _shape_only(schema):  # a future SDK schema with value constraints: no shortcut
        interface.validate()
        return
    reduced, _ = _reduce(sdk.LabelInterface.parse_config_to_json(config))
    try:
        jsonschema.validate(reduced, schema)
    except jsonschema.ValidationError:
        interface._schema_validation(config)  # raises the SDK's own message
        raise
    interface._unique_names_validation(config)
    interface._to_name_validation(config)
    interface._tag_attribute_validation()


_SHAPE_KEYWORDS = {"$schema", "$ref", "title", "definitions", "type", "properties", "additionalProperties",
                   "required", "anyOf", "oneOf", "items", "description"}


def _shape_only(schema: Any) -> bool:
    """True when ``schema`` uses no keyword that looks at values or counts (enum, pattern, minItems...)."""
    if isinstance(schema, list):
        return all(_shape_only(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    for key, sub in schema.items():
        if key in ("properties", "definitions"):
            if not all(_shape_only(s) for s in sub.values()):
                return False
        elif key not in _SHAPE_KEYWORDS or not _shape_only(sub):
            return False
    return True


def _reduce(node: Any) -> tuple[Any, Any]:
    """(``node`` with each list cut to one item per shape, the shape of ``node``).

    >>> _reduce({"Choice": [{"@value": "A"}, {"@value": "B"}, {"@value": 1}]})[0]
    {'Choice': [{'@value': 'A'}, {'@value': 1}]}
    """
    if isinstance(node, dict):
        parts = {k: _reduce(v) for k, v in node.items()}
        return {k: r for k, (r, _) in parts.items()}, ("dict", tuple(sorted((k, s) for k, (_, s) in parts.items())))
    if isinstance(node, list):
        kept: dict[Any, Any] = {}
        for item in node:
            reduced, shape = _reduce(item)
            kept.setdefault(shape, reduced)
        return list(kept.values()), ("list", frozenset(kept))
    return node, type(node).__name__
