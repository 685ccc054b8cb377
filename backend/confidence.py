"""Confidence per control and per task: how sure the version is of each prediction, in [0, 1].

A version chooses its method in prompts.yaml (checked when the file loads)::

    confidence: logprobs                      # or: none (default) | verbalized
    confidence: {method: consistency, samples: 5, temperature: 1.0}

Methods, strongest signal first:

``logprobs``
    The provider returns the log-probability of every token of the JSON answer (OpenAI and
    OpenAI-compatible servers: ``logprobs: true`` is added to the request; anthropic cannot, a
    load-time error).  Each control's value is located in the answer text (:func:`value_spans`)
    and the tokens overlapping it are combined: for a value that is *chosen* (Choices, Labels spans
    with their labels, Rating, Number, Taxonomy, boxes) the joint probability ``exp(sum logprob)``
    -- the probability the model gives to exactly this value, the thing scoring checks; for free
    text (TextArea) the per-token geometric mean ``exp(mean logprob)``, since a free text is never
    the only acceptable string.  Costs nothing extra.  Answers are not taken from the response cache
    (a cached answer has no logprobs).
``consistency``
    ``samples - 1`` more calls of the same prompt at ``temperature`` (default 1.0); a control's
    confidence is the share of the k answers whose value equals the prediction's (the first, normal
    call's) value: the same label, the same set of (passage, label) spans, the same free text after
    case and space folding, boxes equal on a 5-percentage-point grid.  A failed extra call counts as
    a disagreement.  k times the cost (the ledger's tokens and USD include every call; ``samples``
    says how many); no response cache.  Works with every provider (anthropic: no temperature, the
    model's default sampling).
``verbalized``
    The answer schema gets a key ``answer_confidence`` with one number per control ("how sure are
    you, 0 to 1"); it is read and removed before the answer becomes regions.  The weakest signal:
    models state high numbers whether right or wrong.  Calibrate before trusting it.
``none``
    Today's behaviour: no confidence, ``score`` null.

**Task confidence = the minimum over the controls** (:func:`task_confidence`).  The prediction is
right only if every control is; the minimum never claims more than the weakest control (for any
dependence between controls, P(all right) <= min P(control right)), whereas the product assumes
independent errors and runs to 0 on configs with many controls.  Calibration
(:mod:`backend.calibration`) then maps it to a probability of agreeing with ground truth.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from core.errors import VersionError

NONE, LOGPROBS, CONSISTENCY, VERBALIZED = "none", "logprobs", "consistency", "verbalized"
METHODS = (NONE, LOGPROBS, CONSISTENCY, VERBALIZED)
VERBALIZED_KEY = "answer_confidence"
FREE_TEXT_TAGS = ("TextArea",)
BOX_GRID = 5.0  # consistency: box coordinates (percent) compared on this grid


@dataclass(frozen=True)
class ConfidenceSpec:
    """A version's ``confidence:``: the method and, for ``consistency``, k and the temperature."""

    method: str = NONE
    samples: int = 5
    temperature: float = 1.0

    @property
    def calls(self) -> int:
        """Provider calls per task (k for consistency, else 1)."""
        return self.samples if self.method == CONSISTENCY else 1

    @property
    def cacheable(self) -> bool:
        """Whether answers may come from the response cache (no logprobs or samples there)."""
        return self.method in (NONE, VERBALIZED)


def parse_confidence(raw: Any, where: str, provider_cls: Any) -> ConfidenceSpec:
    """The ``confidence:`` of a version; VersionError naming ``where`` when it is not usable.

    >>> parse_confidence({"method": "consistency", "samples": 3}, "v", None)
    ConfidenceSpec(method='consistency', samples=3, temperature=1.0)
    >>> parse_confidence("sure", "v", None)
    Traceback (most recent call last):
    ...
    core.errors.VersionError: v: `confidence` must be one of none, logprobs, consistency, verbalized (got 'sure')
    """
    if raw is None:
        return ConfidenceSpec()
    body = dict(raw) if isinstance(raw, Mapping) else {"method": raw}
    method, extra = body.pop("method", NONE), set(body) - {"samples", "temperature"}
    if method not in METHODS:
        raise VersionError(f"{where}: `confidence` must be one of {', '.join(METHODS)} (got {method!r})")
    if extra or (body and method != CONSISTENCY):
        raise VersionError(f"{where}: `confidence` takes samples and temperature only with method consistency, "
                           f"e.g. {{method: consistency, samples: 5, temperature: 1.0}}")
    k, t = body.get("samples", 5), body.get("temperature", 1.0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise VersionError(f"{where}: `confidence.samples` must be an integer >= 2 (got {k!r})")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 2:
        raise VersionError(f"{where}: `confidence.temperature` must be a number above 0 and at most 2 (got {t!r})")
    if method == LOGPROBS and not getattr(provider_cls, "logprobs", False):
        name = getattr(provider_cls, "name", "this provider")
        raise VersionError(f"{where}: confidence logprobs needs token log-probabilities, which {name} does not "
                           "return; use consistency or verbalized, or an openai / openai-compatible version")
    return ConfidenceSpec(method, k, float(t))


# --------------------------------------------------------------------------- the answer schema
def answer_schema(spec: ConfidenceSpec, plan) -> dict:
    """``plan.schema``, plus the ``answer_confidence`` object for ``verbalized``."""
    if spec.method != VERBALIZED:
        return plan.schema
    names = [c.name for c in plan.controls]
    conf = {"type": "object", "description": "how sure you are of each answer: 0 (a guess) to 1 (certain)",
            "properties": {n: {"type": "number"} for n in names}, "required": names, "additionalProperties": False}
    return {**plan.schema, "properties": {**plan.schema["properties"], VERBALIZED_KEY: conf},
            "required": [*plan.schema["required"], VERBALIZED_KEY]}


def _unit(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return min(1.0, max(0.0, float(x)))


def split_verbalized(data: dict, plan) -> tuple[dict, dict[str, float]]:
    """(the answer without ``answer_confidence``, {control: stated confidence clipped to [0, 1]})."""
    data = dict(data)
    stated = data.pop(VERBALIZED_KEY, None)
    stated = stated if isinstance(stated, Mapping) else {}
    out = {c.name: v for c in plan.controls if (v := _unit(stated.get(c.name))) is not None}
    return data, out


# --------------------------------------------------------------------------- logprobs
def value_spans(raw: str) -> dict[str, tuple[int, int]]:
    """The character span of each top-level value of the JSON object in ``raw`` ({} if it is not one).

    >>> value_spans('{"a": "x", "b": [1, 2]}')
    {'a': (6, 9), 'b': (16, 22)}
    """
    decoder, ws = json.JSONDecoder(), " \t\r\n"
    i = raw.find("{")
    spans: dict[str, tuple[int, int]] = {}
    if i < 0:
        return spans
    i += 1
    try:
        while True:
            while raw[i] in ws + ",":
                i += 1
            if raw[i] == "}":
                return spans
            key, i = json.decoder.scanstring(raw, i + 1)  # type: ignore[attr-defined]
            i = raw.index(":", i) + 1
            while raw[i] in ws:
                i += 1
            _, end = decoder.raw_decode(raw, i)
            spans[key], i = (i, end), end
    except (ValueError, IndexError):
        return spans


def logprob_confidence(raw: str, tokens: Iterable[tuple[str, float]], plan) -> dict[str, float]:
    """{control: confidence} from the answer text and its (token, logprob) pairs (see the module doc).

    Empty when the tokens do not spell ``raw`` (they cannot be mapped back).
    """
    tokens = list(tokens)
    if "".join(t for t, _ in tokens) != raw:
        return {}
    spans, starts, pos = value_spans(raw), [], 0
    for tok, lp in tokens:
        starts.append((pos, pos + len(tok), float(lp)))
        pos += len(tok)
    out: dict[str, float] = {}
    for c in plan.controls:
        if c.name not in spans:
            continue
        a, b = spans[c.name]
        lps = [lp for s, e, lp in starts if s < b and e > a]
        if not lps:
            continue
        total = sum(lps) / len(lps) if c.tag in FREE_TEXT_TAGS else sum(lps)
        out[c.name] = math.exp(min(0.0, total))
    return out


# --------------------------------------------------------------------------- consistency
def canonical(value: Any, tag: str) -> str:
    """A comparable form of one control's answer value (see ``consistency`` in the module doc).

    >>> canonical([{"t": "b"}, {"t": "a"}], "Labels") == canonical([{"t": "a"}, {"t": "b"}], "Labels")
    True
    >>> canonical(" Fast  Delivery", "TextArea") == canonical("fast delivery", "TextArea")
    True
    """
    if tag in FREE_TEXT_TAGS and isinstance(value, str):
        return " ".join(value.split()).casefold()
    if tag == "RectangleLabels":
        value = _grid(value)
    if isinstance(value, list):
        return json.dumps(sorted(json.dumps(v, sort_keys=True) for v in value))
    return json.dumps(value, sort_keys=True)


def _grid(value: Any) -> Any:
    if isinstance(value, list):
        return [_grid(v) for v in value]
    if isinstance(value, dict):
        return {k: _grid(v) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(value / BOX_GRID)
    return value


def agreement(first: Mapping, others: list[Mapping | None], plan) -> dict[str, float]:
    """{control: share of the k = 1 + len(others) answers whose value equals ``first``'s}; None counts as no."""
    out = {}
    for c in plan.controls:
        mine = canonical(first.get(c.name), c.tag)
        same = sum(1 for o in others if o is not None and canonical(o.get(c.name), c.tag) == mine)
        out[c.name] = (1 + same) / (1 + len(others))
    return out


def task_confidence(per_control: Mapping[str, float]) -> float | None:
    """The task's confidence: the minimum over its controls (None when there is none).

    >>> task_confidence({"sentiment": 0.9, "entities": 0.6}), task_confidence({})
    (0.6, None)
    """
    return min(per_control.values()) if per_control else None


@dataclass
class Assessed:
    """An answer with its confidence: the answer to turn into regions, {control: value}, calls made."""

    data: dict
    confidence: dict
    samples: int = 1
    extra: list | None = None  # the Usage of every extra call (consistency)


def assess(spec: ConfidenceSpec, plan, completion, resample: Callable[[int], Any] | None = None) -> Assessed:
    """The answer of ``completion`` (a Completion, or a cached answer with ``data`` and ``raw``) with its
    confidence by ``spec.method``.  ``resample(i)`` makes extra call i (consistency) and returns its
    Completion, or None when it failed (its Usage then comes back as ``(None, usage)``)."""
    data = completion.data
    if spec.method == VERBALIZED:
        data, conf = split_verbalized(data, plan)
        return Assessed(data, conf)
    if spec.method == LOGPROBS:
        tokens = getattr(completion, "logprobs", None)
        return Assessed(data, logprob_confidence(completion.raw, tokens, plan) if tokens else {})
    if spec.method == CONSISTENCY and resample is not None:
        answers, usages = [], []
        for i in range(1, spec.samples):
            answer, usage = resample(i)
            answers.append(answer)
            usages.append(usage)
        return Assessed(data, agreement(data, answers, plan), spec.samples, usages)
    return Assessed(data, {})


def sampling_version(version, options_cls, i: int):
    """The version extra call ``i`` of ``consistency`` uses: the same prompt at the spec's temperature,
    with ``seed: i`` where the provider takes these options (anthropic takes neither)."""
    import dataclasses
    from types import MappingProxyType

    names = options_cls.names() if hasattr(options_cls, "names") else []
    params = dict(version.params)
    if "temperature" in names:
        params["temperature"] = version.confidence.temperature
    if "seed" in names:
        params["seed"] = i
    return dataclasses.replace(version, id=f"{version.id}#sample", params=MappingProxyType(params))
