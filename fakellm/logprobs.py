"""Token log-probabilities for the stand-in server (OpenAI wire format ``choices[0].logprobs``).

The answer text is cut into tokens (runs of word characters, runs of spaces, single other
characters: ``"\\w+|\\s+|[^\\w\\s]"``).  Every token has log-probability 0 (certain) except inside the
value of a key an answer source scored (:class:`fakellm.noisy.ScoredAnswer`): a value's first
*word* token (else its last token) carries ``log q`` (so the joint probability of the whole value is
``q``), and for free-text values every token carries ``log q`` (so the mean per-token probability is
``q``).  With ``top_logprobs: n`` a scored token lists itself and one alternative ``"<other>"``
with the rest of the mass.

>>> text, spans = serialize({"a": "x", "b": 2})
>>> text, spans
('{"a": "x", "b": 2}', {'a': (6, 9), 'b': (16, 17)})
>>> [t["token"] for t in token_logprobs(text, spans, {"a": 0.5}, set(), 0)][:6]
['{', '"', 'a', '"', ':', ' ']
"""
from __future__ import annotations

import json
import math
import re

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def serialize(value: dict) -> tuple[str, dict[str, tuple[int, int]]]:
    """``json.dumps(value)`` (same separators) and the character span of each top-level value."""
    parts, spans, pos = ["{"], {}, 1
    for i, (k, v) in enumerate(value.items()):
        head = (", " if i else "") + json.dumps(k, ensure_ascii=False) + ": "
        body = json.dumps(v, ensure_ascii=False)
        spans[k] = (pos + len(head), pos + len(head) + len(body))
        parts += [head, body]
        pos += len(head) + len(body)
    parts.append("}")
    return "".join(parts), spans


def _entry(token: str, logprob: float, top: int, q: float | None) -> dict:
    item: dict = {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}
    tops = [{"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}]
    if q is not None and q < 1.0:
        tops.append({"token": "<other>", "logprob": math.log(max(1e-12, 1.0 - q)), "bytes": None})
    item["top_logprobs"] = tops[:top]
    return item


def token_logprobs(text: str, spans: dict, probs: dict, free: set, top: int) -> list[dict]:
    """``logprobs.content``: one entry per token of ``text`` (see the module docstring)."""
    out, seen = [], set()
    for m in _TOKEN.finditer(text):
        key = next((k for k, (a, b) in spans.items() if a <= m.start() < b and k in probs), None)
        q = None
        last = key is not None and m.end() >= spans[key][1]  # a value with no word token: its last token
        if key is not None and (key in free or (key not in seen and (m.group()[0].isalnum() or last))):
            q = min(max(float(probs[key]), 1e-12), 1.0)
            seen.add(key)
        out.append(_entry(m.group(), math.log(q) if q is not None else 0.0, top, q))
    return out
