"""Turn ground-truth Label Studio regions into the answer JSON a perfect model would give.

The demo feeds these answers to the stand-in LLM server (``fakellm``),
which then worsens them per model at a fixed error rate, so "a cheaper model"
really is measurably worse, the same way on every run.  Covers the demo's
control tags (Choices, Labels spans, TextArea, Rating, Number).
"""
from __future__ import annotations


def _occurrence(text: str, start: int, quote: str) -> int:
    n, pos = 0, text.find(quote)
    while pos != -1 and pos <= start:
        n += 1
        pos = text.find(quote, pos + 1)
    return max(n, 1)


def answer_from_regions(result: list[dict], plan, text: str) -> dict:
    """The answer (keyed by control name, as ``plan.schema`` asks) that ``result`` encodes.

    >>> from backend.schema import plan_for
    >>> plan = plan_for('<View><Text name="t" value="$t"/>'
    ...                 '<Choices name="c" toName="t"><Choice value="A"/><Choice value="B"/></Choices></View>')
    >>> answer_from_regions([{"from_name": "c", "type": "choices", "value": {"choices": ["B"]}}], plan, "x")
    {'c': 'B'}
    """
    answer: dict = {}
    for control in plan.controls:
        name, tag = control.name, control.tag.lower()
        mine = [r for r in result if r.get("from_name") == name]
        prop = plan.schema["properties"][name]
        if tag == "choices":
            chosen = [c for r in mine for c in r["value"].get("choices", [])]
            answer[name] = chosen if prop.get("type") == "array" else (chosen[0] if chosen else None)
        elif tag == "labels":
            answer[name] = [
                {"text": r["value"]["text"], "label": lab,
                 "occurrence": _occurrence(text, r["value"]["start"], r["value"]["text"])}
                for r in mine
                for lab in r["value"].get("labels", [])
            ]
        elif tag == "textarea":
            answer[name] = "\n".join(t for r in mine for t in r["value"].get("text", []))
        elif tag in ("rating", "number"):
            answer[name] = mine[0]["value"][tag] if mine else None
        else:
            raise ValueError(f"the demo oracle does not cover {control.tag}")
    return answer
