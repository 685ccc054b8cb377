"""A stand-in "model" whose answers vary across samples and whose confidence is informative but imperfect.

:class:`NoisyTableAnswer` answers from a ground-truth table like :class:`~fakellm.answers.TableAnswer`,
with known statistical properties the tests check:

* every task (table key) has a hidden **difficulty** ``d`` in [0, 1) (a fixed draw per seed and key);
* each control (top-level answer key) is right with probability ``p(d) = 1 - error_scale * d**2``
  (``error_scale`` per model, like ``TableAnswer``'s error rates: exact name, longest prefix, default);
  a wrong control gets one deliberate mistake (:func:`fakellm.answers.worsen`; a free-text string loses
  its last word);
* the probability it *reports* for the value it chose, right or wrong, is
  ``q = sigmoid(sharpness * logit(p(d)) + noise * e)`` with ``e`` standard normal: a noisy, monotone,
  over-confident (``sharpness`` > 1) function of ``p(d)``, which knows how hard the task is but not
  whether this answer is the wrong one.  So confidence is informative but imperfect: its AUROC for
  correctness is bounded by that of ``p(d)`` itself.  ``q`` comes back as token log-probabilities (see
  :class:`ScoredAnswer` and the server);
* **samples**: a request with ``temperature`` absent or 0 is greedy: sample 0, the same answer every
  time.  With ``temperature > 0`` the sample index is the request's ``seed`` when given, else a counter
  per (model, key): repeated requests give independent draws, so agreement across samples is
  informative (k-sample self-consistency).

>>> src = NoisyTableAnswer({"Great phone": {"s": "pos"}}, default_error_scale=0.0)
>>> schema = {"type": "object", "properties": {"s": {"enum": ["pos", "neg"]}}}
>>> out = src(RequestInfo("openai", "m", "", "<text>Great phone</text>", schema))
>>> out.value, round(out.probs["s"], 3) > 0.5
({'s': 'pos'}, True)
"""
from __future__ import annotations

import copy
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from fakellm.answers import _SCHEMA_ANSWER, AnswerSource, RequestInfo, _unit, worsen

VERBALIZED_KEY = "answer_confidence"  # the key backend.confidence adds to the schema for `verbalized`


@dataclass
class ScoredAnswer:
    """An answer plus the probability the "model" gives each top-level value (what the logprobs encode).

    ``free`` names the keys holding free text: their every token carries ``log q`` (a per-token
    probability); other values carry ``log q`` on their first token (the probability of the whole value).
    """

    value: dict
    probs: dict[str, float] = field(default_factory=dict)
    free: set[str] = field(default_factory=set)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class NoisyTableAnswer:
    """See the module docstring.  ``table`` maps a key (a task's text) to its ground-truth answer."""

    def __init__(self, table: Mapping[str, Any], *, error_scales: Mapping[str, float] | None = None,
                 default_error_scale: float = 0.6, sharpness: float = 2.0, noise: float = 0.5, seed: int = 0,
                 fallback: AnswerSource | None = _SCHEMA_ANSWER):
        self.table = dict(table)
        self.keys = sorted(self.table, key=len, reverse=True)
        self.error_scales = dict(error_scales or {})
        self.default_error_scale = float(default_error_scale)
        self.sharpness, self.noise, self.seed = float(sharpness), float(noise), seed
        self.fallback = fallback
        self._counts: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def error_scale(self, model: str) -> float:
        if model in self.error_scales:
            return self.error_scales[model]
        prefixes = [p for p in self.error_scales if model.startswith(p)]
        return self.error_scales[max(prefixes, key=len)] if prefixes else self.default_error_scale

    def difficulty(self, key: str) -> float:
        """The hidden difficulty of a task (its table key)."""
        return _unit(self.seed, key, "difficulty")

    def p_right(self, model: str, key: str) -> float:
        """The probability that each control of this task's answer is right."""
        return 1.0 - self.error_scale(model) * self.difficulty(key) ** 2

    def sample_index(self, info: RequestInfo, key: str) -> int:
        """0 for a greedy request; else the request's seed, else a counter per (model, key)."""
        body = info.body or {}
        if not body.get("temperature"):
            return 0
        if isinstance(body.get("seed"), int):
            return int(body["seed"]) + 1
        with self._lock:
            n = self._counts[(info.model, key)] = self._counts.get((info.model, key), 0) + 1
        return n

    def __call__(self, info: RequestInfo) -> Any:
        key = next((k for k in self.keys if k and k in info.user), None)
        if key is None:
            if self.fallback is None:
                raise LookupError("no table key occurs in the prompt")
            return self.fallback(info)
        truth = copy.deepcopy(self.table[key])
        props = (info.schema or {}).get("properties") or {}
        n, p = self.sample_index(info, key), self.p_right(info.model, key)
        out = ScoredAnswer(value={})
        for name, value in truth.items():
            right = _unit(self.seed, info.model, key, name, n, "right") < p
            sch = props.get(name) or {}
            if not right:
                value = self.mistake(name, value, sch, random.Random(f"{self.seed}:{info.model}:{key}:{name}:{n}"))
            e = random.Random(f"{self.seed}:{info.model}:{key}:{name}:{n}:noise").gauss(0.0, 1.0)
            out.value[name] = value
            out.probs[name] = sigmoid(self.sharpness * logit(p) + self.noise * e)
            if isinstance(value, str) and "enum" not in sch:
                out.free.add(name)
        for name, sch in props.items():  # keys the table lacks: from the schema
            if name == VERBALIZED_KEY:  # what models say: squeezed into 0.8-1.0, rounded to 0.1
                out.value[name] = {c: round(0.8 + 0.2 * out.probs.get(c, 1.0), 1) for c in sch.get("properties", {})}
            elif name not in out.value:
                out.value[name] = _SCHEMA_ANSWER.build(sch, info.schema or {}, "")
        return out

    @staticmethod
    def mistake(name: str, value: Any, schema: dict, rng: random.Random) -> Any:
        """``value`` with one deliberate mistake (a free-text string loses its last word)."""
        if isinstance(value, str) and "enum" not in schema:
            words = value.split()
            return " ".join(words[:-1]) if len(words) > 1 else value + " etc"
        return worsen({name: value}, {"type": "object", "properties": {name: schema}}, rng)[name]


def demo_source(n: int = 300, seed: int = 7, **kwargs: Any) -> NoisyTableAnswer:
    """A :class:`NoisyTableAnswer` over the demo dataset (:mod:`fakellm.dataset`), keyed by review text."""
    from backend.schema import plan_for
    from fakellm.dataset import LABEL_CONFIG, make_tasks
    from fakellm.oracle import answer_from_regions

    plan = plan_for(LABEL_CONFIG)
    table = {t["data"]["text"]: answer_from_regions(t["annotations"][0]["result"], plan, t["data"]["text"])
             for t in make_tasks(n, seed)}
    return NoisyTableAnswer(table, **kwargs)
