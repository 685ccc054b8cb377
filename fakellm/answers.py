"""Answer sources for the stand-in LLM server (a test double, not a model).

An answer source is any callable ``source(info: RequestInfo) -> JSON value`` (normally a
dict).  The server serialises what it returns as the model's answer.  Provided here:

* :class:`SchemaAnswer` - a valid answer built from the JSON schema alone;
* :class:`TableAnswer` - answers looked up in a table keyed by text found in the prompt,
  made deterministically worse for chosen models (to imitate a cheaper model);
* :func:`load_answer_source` - ``"pkg.module:factory"`` -> ``factory()``.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

FAULT_MARKER = re.compile(r"\[\[fault:[^\]]*\]\]")


@dataclass
class RequestInfo:
    """What an answer source sees of one request."""

    api: str                      # "openai" or "anthropic"
    model: str
    system: str                   # all system text, joined
    user: str                     # all user text parts, joined with blank lines
    schema: dict | None           # the requested JSON schema (None when the request names none)
    images: list[str] = field(default_factory=list)  # image URLs; inline images as "data:<type>;base64,..."
    body: dict = field(default_factory=dict, repr=False)  # the raw request body


AnswerSource = Callable[[RequestInfo], Any]

_TAGGED = re.compile(r"<([A-Za-z][\w.-]*)>(.*?)</\1>", re.S)
_BLOCK = re.compile(r'```[\w-]*\n?(.*?)```|"""(.*?)"""', re.S)
_WORD = re.compile(r"\w+")


def task_text(user: str) -> str:
    """The part of the user message that holds the task text.

    The first ``<tag>...</tag>`` element, else the first ```` ``` ```` or ``\"\"\"`` block, else the
    last line of the message (instructions usually end with the text):

    >>> task_text("Classify:\\n<text>Great phone</text>")
    'Great phone'
    >>> task_text("Classify the review: Great phone")
    'Classify the review: Great phone'
    """
    user = FAULT_MARKER.sub("", user)
    m = _TAGGED.search(user)
    if m:
        return m.group(2)
    m = _BLOCK.search(user)
    if m:
        return m.group(1) if m.group(1) is not None else m.group(2)
    lines = [ln for ln in user.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def quote_from(user: str) -> str:
    """A real substring of the task text to use as a quoted span: its first word.

    When the task text is not delimited (no tag or block), the *last* word of the message is
    used instead, since an instruction like ``"Classify: {text}"`` ends with the text.

    >>> quote_from("Find names.\\n<text>Alice met Bob</text>")
    'Alice'
    >>> quote_from("Find names in: Alice met Bob")
    'Bob'
    """
    cleaned = FAULT_MARKER.sub("", user)
    region = task_text(cleaned)
    words = _WORD.findall(region)
    if not words:
        return region.strip()[:20]
    delimited = bool(_TAGGED.search(cleaned) or _BLOCK.search(cleaned))
    return words[0] if delimited else words[-1]


def _resolve(schema: Any, root: dict) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def _non_null(options: list) -> Any:
    for opt in options:
        if not (isinstance(opt, dict) and opt.get("type") == "null"):
            return opt
    return options[0] if options else {}


class SchemaAnswer:
    """A valid answer built from the JSON schema alone, deterministically.

    Objects get every property; ``enum`` the first non-null value; ``anyOf``/``oneOf`` and type
    lists their first non-null branch; arrays ``max(1, minItems)`` items (distinct enum values
    when the items are an enum); integers their minimum (else 0); bounded numbers the point a
    quarter of the way up their range (a box gets x=y=w=h=25 on 0-100); strings a quote of the
    task text (:func:`quote_from`), so span answers point at real text.

    >>> SchemaAnswer()(RequestInfo("openai", "m", "", "<text>Hi there</text>", {
    ...     "type": "object", "properties": {"label": {"enum": ["pos", "neg"]},
    ...                                       "quote": {"type": "string"}}}))
    {'label': 'pos', 'quote': 'Hi'}
    """

    def __call__(self, info: RequestInfo) -> Any:
        if not info.schema:
            return {}
        return self.build(info.schema, info.schema, quote_from(info.user))

    def build(self, schema: Any, root: dict, quote: str) -> Any:
        schema = _resolve(schema, root)
        if not isinstance(schema, dict):
            return None
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            values = [v for v in schema["enum"] if v is not None] or schema["enum"]
            return values[0] if values else None
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.build(_non_null(schema[key]), root, quote)
        if "allOf" in schema and schema["allOf"]:
            return self.build(schema["allOf"][0], root, quote)
        kind = _kind(schema)
        if kind == "object":
            return {k: self.build(v, root, quote) for k, v in (schema.get("properties") or {}).items()}
        if kind == "array":
            return self._array(schema, root, quote)
        return _scalar(kind, schema, quote)

    def _array(self, schema: dict, root: dict, quote: str) -> list:
        n = max(1, int(schema.get("minItems", 0)))
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        items = _resolve(schema.get("items") or {}, root)
        if isinstance(items, dict) and "enum" in items:
            values = [v for v in items["enum"] if v is not None]
            return values[:n]
        return [self.build(items, root, quote) for _ in range(n)]


def _kind(schema: dict) -> str:
    """The JSON type a schema asks for (first non-null of a type list; guessed when absent)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return kind


def _scalar(kind: str, schema: dict, quote: str) -> Any:
    """SchemaAnswer's value of a scalar type (see its docstring)."""
    if kind == "integer":
        if "minimum" in schema:
            lo = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            lo = math.floor(schema["exclusiveMinimum"]) + 1
        else:
            lo = 0
        hi = schema.get("maximum")
        return int(min(lo, hi) if hi is not None else lo)
    if kind == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and hi is not None:
            return lo + (hi - lo) / 4
        if lo is not None:
            return lo
        return min(0, hi) if hi is not None else 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return quote


_SCHEMA_ANSWER = SchemaAnswer()  # TableAnswer's default fallback (stateless, shared)


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TableAnswer:
    """Answers from a table keyed by text found in the prompt, worsened per model.

    ``table`` maps a key (e.g. a task's text) to the answer JSON.  The answer used is the one
    whose key is the *longest* key occurring in the user message.  A model whose error rate
    (``error_rates``: exact model name, else the longest matching prefix, else
    ``default_error_rate``) says so gets a deliberately changed answer: for each (seed, model,
    key) a fixed draw decides whether the answer is worsened, and how (one enum value swapped
    for another, one array item dropped, a bounded number shifted, a boolean flipped).  So a
    "cheaper model" with rate 0.3 is wrong on about 30% of tasks, the same ones every run.
    Keys not found go to ``fallback`` (default :class:`SchemaAnswer`); ``fallback=None`` raises
    ``LookupError`` (the server answers 500).

    >>> t = TableAnswer({"Great phone": {"sentiment": "positive"}}, error_rates={"mini": 1.0})
    >>> schema = {"type": "object", "properties": {"sentiment": {"enum": ["positive", "negative"]}}}
    >>> t(RequestInfo("openai", "big", "", "<text>Great phone</text>", schema))
    {'sentiment': 'positive'}
    >>> t(RequestInfo("openai", "mini-2", "", "<text>Great phone</text>", schema))
    {'sentiment': 'negative'}
    """

    def __init__(self, table: Mapping[str, Any], *, error_rates: Mapping[str, float] | None = None,
                 default_error_rate: float = 0.0, seed: int = 0,
                 fallback: AnswerSource | None = _SCHEMA_ANSWER):
        self.table = dict(table)
        self.keys = sorted(self.table, key=len, reverse=True)
        self.error_rates = dict(error_rates or {})
        self.default_error_rate = float(default_error_rate)
        self.seed = seed
        self.fallback = fallback

    @classmethod
    def from_file(cls, path: str) -> "TableAnswer":
        """Load ``{"answers": {key: answer}, "error_rates": {...}, "default_error_rate": 0, "seed": 0}``."""
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if not isinstance(doc, dict) or not isinstance(doc.get("answers"), dict):
            raise ValueError(f"{path}: expected an object with an `answers` mapping")
        return cls(doc["answers"], error_rates=doc.get("error_rates"),
                   default_error_rate=doc.get("default_error_rate", 0.0), seed=doc.get("seed", 0))

    def error_rate(self, model: str) -> float:
        """The error rate for ``model`` (exact name, else longest prefix, else the default)."""
        if model in self.error_rates:
            return self.error_rates[model]
        prefixes = [p for p in self.error_rates if model.startswith(p)]
        return self.error_rates[max(prefixes, key=len)] if prefixes else self.default_error_rate

    def find_key(self, text: str) -> str | None:
        """The longest table key occurring in ``text``."""
        return next((k for k in self.keys if k and k in text), None)

    def __call__(self, info: RequestInfo) -> Any:
        key = self.find_key(info.user)
        if key is None:
            if self.fallback is None:
                raise LookupError("no table key occurs in the prompt")
            return self.fallback(info)
        answer = copy.deepcopy(self.table[key])
        if _unit(self.seed, info.model, key, "wrong?") < self.error_rate(info.model):
            answer = worsen(answer, info.schema, random.Random(f"{self.seed}:{info.model}:{key}"))
        return answer


def worsen(answer: Any, schema: dict | None, rng: random.Random) -> Any:
    """``answer`` with one deliberate mistake chosen by ``rng`` (unchanged if nothing can be changed).

    >>> worsen({"n": 3, "tags": ["a", "b"]}, None, random.Random(1)) != {"n": 3, "tags": ["a", "b"]}
    True
    """
    sites = _MistakeSites(schema or {}, rng)
    sites.visit(answer, schema or {}, None, None)
    if sites.sites:
        rng.choice(sites.sites)()
    return answer


class _MistakeSites:
    """Every single change ``worsen`` could make to an answer, in a fixed order (one callable each)."""

    def __init__(self, root: dict, rng: random.Random):
        self.root, self.rng = root, rng
        self.sites: list[Callable[[], None]] = []

    def _schema(self, sch: Any) -> dict:
        sch = _resolve(sch, self.root) if isinstance(sch, dict) else {}
        for k in ("anyOf", "oneOf"):
            if k in sch:
                sch = _non_null(sch[k])
                sch = _resolve(sch, self.root) if isinstance(sch, dict) else {}
        return sch

    def visit(self, value: Any, sch: Any, parent: Any, key: Any) -> None:
        sch, rng = self._schema(sch), self.rng
        if parent is not None and "enum" in sch:
            others = [v for v in sch["enum"] if v != value and v is not None]
            if others:
                self.sites.append(lambda: parent.__setitem__(key, rng.choice(others)))
            return
        if isinstance(value, dict):
            props = sch.get("properties") or {}
            for k, v in value.items():
                self.visit(v, props.get(k, {}), value, k)
        elif isinstance(value, list):
            self._list(value, sch)
        elif isinstance(value, bool):
            if parent is not None:
                self.sites.append(lambda: parent.__setitem__(key, not value))
        elif isinstance(value, (int, float)) and parent is not None:
            self._number(value, sch, parent, key)

    def _list(self, value: list, sch: dict) -> None:
        rng = self.rng
        if value:
            self.sites.append(lambda: value.pop(rng.randrange(len(value))))
        items = sch.get("items") or {}
        if not (isinstance(items, dict) and "enum" in items):
            for i, v in enumerate(value):
                self.visit(v, items, value, i)

    def _number(self, value: float, sch: dict, parent: Any, key: Any) -> None:
        lo, hi = sch.get("minimum"), sch.get("maximum")
        step = 1 if isinstance(value, int) else ((hi - lo) / 10 if lo is not None and hi is not None else 1.0)
        new = value + step if hi is None or value + step <= hi else value - step
        if lo is None or new >= lo:
            self.sites.append(lambda: parent.__setitem__(key, new))


def load_answer_source(spec: str) -> AnswerSource:
    """``"pkg.module:factory"`` -> ``factory()``, which must return an answer source (a callable).

    >>> load_answer_source("fakellm.answers:SchemaAnswer")  # doctest: +ELLIPSIS
    <fakellm.answers.SchemaAnswer object at ...>
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--answers {spec!r}: expected pkg.module:factory")
    factory: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        factory = getattr(factory, part)
    source = factory()
    if not callable(source):
        raise TypeError(f"{spec}() returned {type(source).__name__}, not a callable answer source")
    return source
