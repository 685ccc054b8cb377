"""How sure is each number of a scoring report: the intervals the engine adds (issue 10).

``scoring.engine.evaluate`` keeps, per compared task, its score, its per-control scores,
each label's (tp, fp, fn) and the single-choice picks; :func:`add_intervals` turns them into
intervals (``scoring.stats``, tasks are the resampled units) and adds, never replaces, keys::

    "ci_level": 0.95, "ci_seed": 0, "ci_method": "wilson" | "bca" | "t",   # how score_ci was made
    "score_ci": [lo, hi] | None,
    "per_control": {name: {..., "ci": [lo, hi] | None}},
    "per_label": {control: {label: {..., "precision_ci", "recall_ci", "f1_ci"}}},
    "kappa_ci": {control: [lo, hi] | None}, "alpha_ci": {control: [lo, hi] | None}

An interval is ``None`` where it is undefined (fewer than two tasks, a zero denominator, or
no spread at all to say how far the number could move); it is never invented.

:func:`ppi_section` is the project-wide estimate of a version's score (``--proxy``): its
agreement with a strong proxy version on every task, corrected on the tasks where ground
truth is known (prediction-powered inference, ``scoring.stats.ppi``).

>>> rep = {"score": 1.0, "per_control": {"c": {"score": 1.0}}, "per_label": {}, "kappa": {}, "alpha": {},
...        "tasks": [{"id": 1, "score": 1.0, "per_control": {"c": 1.0}}]}
>>> add_intervals(rep, TaskData({}, {}))["score_ci"], rep["per_control"]["c"]["ci"]   # one task: undefined
(None, None)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.stats import alpha_ci, kappa_ci, mean_ci, mean_ci_method, ppi_mean, prf_ci
from scoring.stats.intervals import is_binary

__all__ = ["IntervalOptions", "TaskData", "add_intervals", "interval_text", "parse_level", "ppi_section", "ppi_text"]


@dataclass(frozen=True)
class IntervalOptions:
    """Confidence level and bootstrap seed of every interval of a report.

    >>> IntervalOptions().level, IntervalOptions(level=0.9).seed
    (0.95, 0)
    """

    level: float = 0.95
    seed: int = 0


@dataclass
class TaskData:
    """What the engine keeps per compared task besides its scores (same task order as ``report["tasks"]``)."""

    label_stats: dict   # control -> [per task {label: (tp, fp, fn)}]
    picks: dict         # single-choice control -> ([prediction label], [reference label]) where both chose one


def parse_level(text: str) -> float:
    """The ``--level`` flag: a confidence level strictly between 0 and 1 (argparse type).

    >>> parse_level("0.9")
    0.9
    """
    import argparse

    try:
        level = float(text)
    except ValueError:
        level = -1.0
    if not 0.0 < level < 1.0:
        raise argparse.ArgumentTypeError(f"confidence level must be a number between 0 and 1, e.g. 0.95 (got {text!r})")
    return level


def _pair(ci) -> list | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


def interval_text(value, ci, spec: str = ".3f") -> str:
    """A number with its interval, for summaries: ``0.924 [0.871, 0.962]``.

    >>> interval_text(0.9243, [0.871, 0.962]), interval_text(0.5, None), interval_text(None, None)
    ('0.924 [0.871, 0.962]', '0.500 [–]', '–')
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    if not ci:
        return f"{format(value, spec)} [–]"
    return f"{format(value, spec)} [{format(ci[0], spec)}, {format(ci[1], spec)}]"


def ppi_text(ppi: dict) -> str:
    """The summary line of the project-wide estimate (``report["ppi"]``).

    >>> print(ppi_text({"proxy": "4o", "score": 0.9, "ci": [0.88, 0.92], "classical_ci": [0.8, 0.97],
    ...                 "n_labeled": 50, "n_unlabeled": 950}))   # doctest: +NORMALIZE_WHITESPACE
    project-wide estimate with proxy 4o: 0.900 [0.880, 0.920] from 50 ground-truth and 950 other task(s)
    (ground-truth tasks alone: [0.800, 0.970])
    """
    alone = f"[{ppi['classical_ci'][0]:.3f}, {ppi['classical_ci'][1]:.3f}]" if ppi.get("classical_ci") else "[–]"
    return (f"project-wide estimate with proxy {ppi['proxy']}: {interval_text(ppi['score'], ppi['ci'])} from "
            f"{ppi['n_labeled']} ground-truth and {ppi['n_unlabeled']} other task(s) "
            f"(ground-truth tasks alone: {alone})")


def _per_label_ci(report: dict, data: TaskData, opts: IntervalOptions) -> None:
    for control, labels in report["per_label"].items():
        rows = data.label_stats.get(control) or []
        zero = (0, 0, 0)
        for lab, entry in labels.items():
            # one label at a time: far fewer distinct per-task rows than all labels side by side, so the
            # task bootstrap is several times faster (each label's interval is the same either way)
            ci = prf_ci({lab: [st.get(lab, zero) for st in rows]}, opts.level, opts.seed)[lab] if rows else {}
            for key in ("precision", "recall", "f1"):
                entry[f"{key}_ci"] = _pair(ci.get(key))


def add_intervals(report: dict, data: TaskData, options: IntervalOptions | None = None) -> dict:
    """Add the intervals listed in the module docstring to an engine report (in place); returns it."""
    opts = options or IntervalOptions()
    tasks = report["tasks"]
    scores = [t["score"] for t in tasks]
    report["ci_level"], report["ci_seed"] = opts.level, opts.seed
    binary = bool(scores) and is_binary(np.asarray(scores, dtype=float))
    report["ci_method"] = mean_ci_method(len(scores), binary)
    report["score_ci"] = _pair(mean_ci(scores, opts.level, opts.seed))
    for name, entry in report["per_control"].items():
        values = [t["per_control"].get(name) for t in tasks]
        entry["ci"] = _pair(mean_ci(values, opts.level, opts.seed))
    _per_label_ci(report, data, opts)
    report["kappa_ci"], report["alpha_ci"] = {}, {}
    for control in report["kappa"]:
        preds, refs = data.picks.get(control, ([], []))
        defined = report["kappa"][control] is not None
        report["kappa_ci"][control] = _pair(kappa_ci(refs, preds, opts.level, opts.seed)) if defined else None
        defined = report["alpha"].get(control) is not None
        report["alpha_ci"][control] = _pair(alpha_ci([refs, preds], opts.level, opts.seed)) if defined else None
    return report


def ppi_section(report: dict, proxy_report: dict, proxy: str, level: float = 0.95) -> dict:
    """Project-wide estimate of the version's score against ground truth (PPI++).

    ``report``: the version scored against ground truth; ``proxy_report``: the same version
    scored against ``proxy`` (a strong version run on all tasks).  Labeled tasks = both reports
    scored them (version, proxy and ground truth known); unlabeled = only the proxy report did.
    Returns ``{"proxy", "score", "ci", "classical_ci", "n_labeled", "n_unlabeled", "lam"}``.

    >>> truth = {"tasks": [{"id": i, "score": s} for i, s in enumerate([1, 1, 0, 1] * 10)]}
    >>> vs_proxy = {"tasks": [{"id": i, "score": s} for i, s in enumerate([1, 1, 0, 1] * 10 + [1, 0, 1, 1] * 100)]}
    >>> p = ppi_section(truth, vs_proxy, "big-v1")
    >>> width = lambda ci: ci[1] - ci[0]
    >>> p["n_labeled"], p["n_unlabeled"], round(p["score"], 3), width(p["ci"]) < width(p["classical_ci"])
    (40, 400, 0.75, True)
    """
    truth = {t["id"]: t["score"] for t in report["tasks"]}
    labeled_ids = [t["id"] for t in proxy_report["tasks"] if t["id"] in truth]
    yhat = {t["id"]: t["score"] for t in proxy_report["tasks"]}
    unlabeled = [s for tid, s in yhat.items() if tid not in truth]
    r = ppi_mean([truth[t] for t in labeled_ids], [yhat[t] for t in labeled_ids], unlabeled, level)
    return {"proxy": proxy, "score": r.score, "ci": _pair(r.ci), "classical_ci": _pair(r.classical_ci),
            "n_labeled": r.n_labeled, "n_unlabeled": r.n_unlabeled, "lam": r.lam}
