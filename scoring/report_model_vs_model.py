"""The HTML report's "without ground truth" section: one version scored against another."""
from __future__ import annotations

from html import escape as _escape

from core.fmt import num
from scoring.uncertainty import interval_text


def escape(value) -> str:
    return _escape("" if value is None else str(value), quote=True)


def model_vs_model_section(mvm: dict | None) -> list[str]:
    """The "without ground truth" section: one version against another, kappa, the most-disagreeing tasks.

    >>> html_ = "".join(model_vs_model_section({"version": "b", "reference": "a", "score": 0.9, "score_ci": [0.8, 0.95],
    ...     "n_compared": 40, "kappa": {"sentiment": 0.8}, "tasks": [{"id": 2, "score": 0.5}, {"id": 1, "score": 1}]}))
    >>> "b agrees with a at 0.900 [0.800, 0.950] on 40 tasks" in html_, "<td>2</td>" in html_
    (True, True)
    """
    if not mvm:
        return []
    kappas = ", ".join(f"{escape(c)} {num(k)}" for c, k in (mvm.get("kappa") or {}).items() if k is not None)
    worst = sorted((t for t in mvm.get("tasks") or () if (t.get("score") or 0) < 1.0),
                   key=lambda t: (t.get("score") or 0.0, str(t.get("id"))))[:10]
    rows = "".join(f"<tr><td>{escape(t.get('id'))}</td><td>{num(t.get('score'))}</td></tr>" for t in worst)
    return [
        "<h2>Without ground truth: model vs model</h2>",
        f"<p>{escape(mvm.get('version'))} agrees with {escape(mvm.get('reference'))} at "
        f"{escape(interval_text(mvm.get('score'), mvm.get('score_ci')))} on {escape(mvm.get('n_compared'))} tasks"
        f"{' (Cohen' + chr(39) + 's kappa: ' + kappas + ')' if kappas else ''}. Where two models disagree is "
        "where a person should look first.</p>",
        f"<table><tr><th>task</th><th>agreement</th></tr>{rows}</table>" if rows
        else "<p>The two versions agree fully on every compared task.</p>",
    ]
