"""The strict structured-output rules an answer schema must follow (:func:`strict_violations`).

The intersection of what OpenAI strict structured outputs ("Supported schemas") and Anthropic
structured outputs ("JSON Schema limitations") accept.  Anthropic rejects numeric, string-length
and array bounds other than minItems 0/1; OpenAI rejects the composition keywords; both need
closed objects with every property required.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
MAX_BIG_ENUM_CHARS = 15_000  # in one enum of more than 250 values
BIG_ENUM = 250


@dataclass
class _Walk:
    """What a walk over a schema has found so far."""

    problems: list[str] = field(default_factory=list)
    properties: int = 0
    enum: int = 0
    chars: int = 0
    unions: int = 0


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

        >>> for problem in strict_violations({"type": "object", "properties": {"a": {"type": "string"}}}):
        ...     print(problem)
        $: object must set additionalProperties to false
        $: object must list every property in required (missing: ['a'])
    """
    w = _Walk()
    if not isinstance(schema, dict) or schema.get("type") != "object" or "anyOf" in schema:
        w.problems.append("$: the root must be a plain object schema (not anyOf)")
    _node(w, schema, "$", 0)
    _totals(w)
    return w.problems


def _node(w: _Walk, node: Any, path: str, depth: int) -> None:
    if not isinstance(node, dict):
        w.problems.append(f"{path}: a schema must be an object, got {type(node).__name__}")
        return
    w.problems.extend(f"{path}: unsupported keyword {key!r}" for key in node if key in _FORBIDDEN)
    if "format" in node and node["format"] not in _FORMATS:
        w.problems.append(f"{path}: unsupported format {node['format']!r}")
    if "anyOf" in node:
        _any_of(w, node["anyOf"], path, depth)
        return
    types = _types(w, node, path)
    if "enum" in node:
        _enum(w, node["enum"], path)
    if "object" in types:
        _object(w, node, path, depth)
    if "array" in types:
        _array(w, node, path, depth)


def _any_of(w: _Walk, options: Any, path: str, depth: int) -> None:
    w.unions += 1
    if not isinstance(options, list) or not options:
        w.problems.append(f"{path}: anyOf must be a non-empty list")
        return
    for i, sub in enumerate(options):
        _node(w, sub, f"{path}.anyOf[{i}]", depth)


def _types(w: _Walk, node: dict, path: str) -> list:
    """The node's types without ``"null"``; notes a missing, unknown or badly-formed type."""
    types = node.get("type")
    if types is None:
        if "enum" not in node and "const" not in node:
            w.problems.append(f"{path}: every schema needs a type")
        return []
    if isinstance(types, list):
        w.unions += 1
        if not (len(types) == 2 and "null" in types and all(t in _TYPES for t in types)):
            w.problems.append(f"{path}: a type list may only be [<type>, \"null\"], got {types}")
        return [t for t in types if t != "null"]
    if types not in _TYPES:
        w.problems.append(f"{path}: unknown type {types!r}")
    return [types]


def _enum(w: _Walk, enum: Any, path: str) -> None:
    if not isinstance(enum, list) or not enum:
        w.problems.append(f"{path}: enum must be a non-empty list")
        return
    if any(isinstance(v, (dict, list)) for v in enum):
        w.problems.append(f"{path}: enum values must be strings, numbers, booleans or null")
    w.enum += len(enum)
    chars = sum(len(v) for v in enum if isinstance(v, str))
    w.chars += chars
    if len(enum) > BIG_ENUM and chars > MAX_BIG_ENUM_CHARS:
        w.problems.append(f"{path}: an enum of {len(enum)} values may hold at most 15,000 characters, has {chars}")
    if len(set(map(json.dumps, enum))) != len(enum):
        w.problems.append(f"{path}: enum values must be unique")


def _object(w: _Walk, node: dict, path: str, depth: int) -> None:
    if depth >= MAX_DEPTH:
        w.problems.append(f"{path}: nested more than {MAX_DEPTH} object levels")
    props = node.get("properties")
    if not isinstance(props, dict):
        w.problems.append(f"{path}: object must list its properties")
        props = {}
    if node.get("additionalProperties") is not False:
        w.problems.append(f"{path}: object must set additionalProperties to false")
    required = node.get("required", [])
    missing = [k for k in props if k not in required]
    if missing:
        w.problems.append(f"{path}: object must list every property in required (missing: {missing})")
    unknown = [k for k in required if k not in props]
    if unknown:
        w.problems.append(f"{path}: required names unknown properties {unknown}")
    w.properties += len(props)
    for key, sub in props.items():
        w.chars += len(key)
        _node(w, sub, f"{path}.{key}", depth + 1)


def _array(w: _Walk, node: dict, path: str, depth: int) -> None:
    if "items" not in node:
        w.problems.append(f"{path}: array must define items")
    else:
        _node(w, node["items"], f"{path}[]", depth)
    if node.get("minItems", 0) not in (0, 1):
        w.problems.append(f"{path}: minItems may only be 0 or 1")


def _totals(w: _Walk) -> None:
    if w.properties > MAX_PROPERTIES:
        w.problems.append(f"$: {w.properties} object properties in all; the limit is {MAX_PROPERTIES}")
    if w.enum > MAX_ENUM_VALUES:
        w.problems.append(f"$: {w.enum} enum values in all; the limit is {MAX_ENUM_VALUES}")
    if w.chars > MAX_STRING_CHARS:
        w.problems.append(f"$: {w.chars} characters of property names and enum values; the limit is {MAX_STRING_CHARS}")
    if w.unions > MAX_UNIONS:
        w.problems.append(f"$: {w.unions} nullable/anyOf schemas; the limit is {MAX_UNIONS}")
