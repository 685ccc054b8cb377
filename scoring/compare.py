"""Paired comparison of versions on the tasks they share, and the verdict (issue 10).

:func:`paired_comparison` takes engine reports of several versions scored against the same
reference (``scoring.engine.evaluate``) and returns (all plain JSON)::

    {"reference", "margin", "level",
     "versions": [{"version", "score", "score_ci", "n_compared"}],
     "pairs": [{"a", "b", "n_shared", "diff", "diff_ci", "p_value", "p_adjusted", "significant", "mcnemar",
                "per_control": {name: {"diff", "diff_ci", "p_value", "mcnemar"}}}],
     "verdict": "one sentence" (None with one version), "non_inferior": version | None}

``diff`` = mean score of ``b`` minus mean score of ``a`` over the tasks both scored (paired
bootstrap interval, sign-flip permutation p-value, ``scoring.stats.paired``).  ``mcnemar``
(``{"b", "c", "p_value"}``: tasks only a got right, only b got right) is given where the
scores are 0/1 (an exact-match control; the pair level when every task score is 0/1), else
``None``.  With more than two versions ``p_adjusted`` is Holm-adjusted over the pairs
(per-control p-values are not adjusted); ``significant`` = ``p_adjusted`` below 1 - level.

The verdict (``scoring.cost.cheapest_non_inferior``): the cheapest version whose difference
to the best-scoring one has a lower interval end above ``-margin``; otherwise the data
cannot tell, and roughly how many more shared ground-truth tasks would
(``scoring.stats.decision``).

:func:`project_estimate` is the other use of a second version: a strong *proxy* run on every
task turns a few ground-truth tasks into a project-wide estimate (``report["ppi"]``).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from core.errors import ScoringError
from scoring.cost import MARGIN, cheapest_non_inferior
from scoring.engine import GROUND_TRUTH, Schema, evaluate_schema
from scoring.stats import Arm, PairedDiff, decision, holm, mcnemar_exact, paired_diff
from scoring.uncertainty import ppi_section

__all__ = ["PairOptions", "paired_comparison", "project_estimate", "verdict"]

EXACT_METRICS = frozenset({"exact"})  # per-control metrics whose task scores are 0/1: McNemar applies


@dataclass(frozen=True)
class PairOptions:
    """Margin of the verdict, confidence level and seed of the paired intervals.

    >>> PairOptions().margin, PairOptions().level
    (0.02, 0.95)
    """

    margin: float = MARGIN
    level: float = 0.95
    seed: int = 0


def _pair(ci) -> list | None:
    return None if ci is None else [float(ci[0]), float(ci[1])]


def _scores(report: dict, control: str | None = None) -> dict:
    """Task id -> score (or one control's score) of a report's compared tasks."""
    if control is None:
        return {t["id"]: t["score"] for t in report["tasks"]}
    return {t["id"]: t["per_control"][control] for t in report["tasks"] if control in t["per_control"]}


def _mcnemar(a: dict, b: dict) -> dict | None:
    try:
        m = mcnemar_exact(a, b)
    except ValueError:          # not 0/1 scores
        return None
    return {"b": m.b, "c": m.c, "p_value": m.p_value}


def _diff_entry(a: dict, b: dict, opts: PairOptions) -> dict:
    r = paired_diff(a, b, opts.level, opts.seed)
    return {"n_shared": r.n_shared, "diff": r.diff, "diff_ci": _pair(r.diff_ci), "p_value": r.p_value}


def _one_pair(ra: dict, rb: dict, opts: PairOptions) -> dict:
    a, b = _scores(ra), _scores(rb)
    entry = {"a": ra["version"], "b": rb["version"], **_diff_entry(a, b, opts), "mcnemar": _mcnemar(a, b)}
    per = {}
    for name, pc in ra["per_control"].items():
        if name not in rb["per_control"]:
            continue
        ca, cb = _scores(ra, name), _scores(rb, name)
        d = _diff_entry(ca, cb, opts)
        del d["n_shared"]
        exact = pc.get("metric") in EXACT_METRICS and rb["per_control"][name].get("metric") in EXACT_METRICS
        per[name] = {**d, "mcnemar": _mcnemar(ca, cb) if exact else None}
    entry["per_control"] = per
    return entry


def _adjust(pairs: list[dict], level: float) -> None:
    tested = [p for p in pairs if p["p_value"] is not None]
    adjusted = holm([p["p_value"] for p in tested]) if len(tested) > 1 else [p["p_value"] for p in tested]
    for p in pairs:
        p["p_adjusted"] = None
    for p, adj in zip(tested, adjusted, strict=True):
        p["p_adjusted"] = adj
    for p in pairs:
        p["significant"] = p["p_adjusted"] is not None and p["p_adjusted"] < 1 - level


def verdict(reports: list[dict], costs: dict | None = None,
            options: PairOptions | None = None) -> tuple[str, str | None]:
    """(one-sentence verdict, name of the non-inferior version chosen or ``None``).

    ``costs``: version -> cost per task (``None`` / missing = unknown).  The best version is
    the one with the highest score; the candidates are the others that are not dearer than it,
    cheapest first (unknown cost last).
    """
    opts = options or PairOptions()
    costs = costs or {}
    best = max(reports, key=lambda r: (r["score"], str(r["version"])))
    diffs = {r["version"]: paired_diff(_scores(best), _scores(r), opts.level, opts.seed)
             for r in reports if r is not best}
    rows = [{"version": r["version"], "score": r["score"], "usd_per_task": costs.get(r["version"])} for r in reports]
    pick, order = cheapest_non_inferior(rows, best["version"], diffs, opts.margin)
    best_arm = Arm(str(best["version"]), costs.get(best["version"]))
    if not order:
        return (f"{best['version']} scores best ({best['score']:.3f}) and no other version costs less: "
                "nothing cheaper to weigh it against", None)

    def say(version) -> str:
        return decision(Arm(str(version), costs.get(version)), best_arm, diffs[version], opts.margin, opts.level)

    if pick is not None:
        return say(pick), pick
    undecided = [v for v in order if not _worse(diffs[v], opts.margin)]
    return say(undecided[0] if undecided else order[0]), None


def _worse(r: PairedDiff, margin: float) -> bool:
    return r.diff_ci is not None and r.diff_ci[1] < -abs(margin)


def paired_comparison(reports: list[dict], costs: dict | None = None, options: PairOptions | None = None) -> dict:
    """Compare the versions of ``reports`` pair by pair (see the module docstring)."""
    opts = options or PairOptions()
    if not reports:
        raise ScoringError("a comparison needs at least one version")
    references = {r["reference"] for r in reports}
    if len(references) > 1:
        raise ScoringError("cannot compare versions scored against different references "
                           f"({', '.join(sorted(map(str, references)))})")
    versions = [{"version": r["version"], "score": r["score"], "score_ci": r.get("score_ci"),
                 "n_compared": r["n_compared"]} for r in reports]
    pairs = [_one_pair(ra, rb, opts) for ra, rb in combinations(reports, 2)]
    _adjust(pairs, opts.level)
    text, pick = verdict(reports, costs, opts) if len(reports) > 1 else (None, None)
    return {"reference": reports[0]["reference"], "margin": opts.margin, "level": opts.level,
            "versions": versions, "pairs": pairs, "verdict": text, "non_inferior": pick}


def project_estimate(tasks: list[dict], schema: Schema, report: dict, proxy: str, level: float = 0.95) -> dict:
    """The report's ``ppi`` section: ``version``'s project-wide score against ground truth,
    from its agreement with ``proxy`` on every task corrected on the ground-truth tasks."""
    if report["reference"] != GROUND_TRUTH:
        raise ScoringError("--proxy estimates the score against ground truth: leave --against out")
    if proxy == report["version"]:
        raise ScoringError(f"--proxy names the scored version '{proxy}' itself: pick a stronger version")
    vs_proxy = evaluate_schema(tasks, schema, report["version"], proxy, intervals=None)
    return ppi_section(report, vs_proxy, proxy, level)
