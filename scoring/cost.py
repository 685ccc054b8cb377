"""The cost section of a scoring report, and quality-vs-cost comparison of versions.

Pure functions over plain dicts: the numbers come from the prediction ledger
(``backend.ledger.Ledger.summary(version, project)``), which records tokens and
USD per (version, task) when the backend pre-labels.  Nothing here invents a
price: when the ledger could not price every call (a model missing from the
price table) or recorded no usage at all, the USD figures are ``None`` and
``notes`` says why.

The cost section (``cost_section``)::

    {"calls": 120, "tasks": 100, "n_scored": 100, "n_project_tasks": 1000,
     "input_tokens": 52000, "output_tokens": 3100,
     "input_tokens_per_task": 520.0, "output_tokens_per_task": 31.0,
     "usd": 0.0412, "usd_per_task": 0.000412, "projected_usd": 0.412,
     "usd_partial": None,
     "errors": {"timeout": 2}, "error_rate": 0.0167,
     "latency": {"p50": 0.81, "p95": 2.3},
     "complete": True, "notes": [],
     "dropped": {"spans": 3, "labels": 1}, "repaired": 2}

``dropped`` totals the answer regions the backend dropped, per kind (``spans``: passages
not found in the text; ``labels``: unknown labels and taxonomy paths; ``boxes``: boxes with
no area in the image; ``values``: regions Label Studio would reject); ``repaired`` counts
answers the backend rewrote by a documented rule (a taxonomy path guessed from its last
name, a box clipped to the image).  Both come from the ledger (empty when it has none).

``usd_per_task`` divides by the number of tasks the ledger saw for the version
(``tasks``), not by the number scored: a version may have pre-labelled tasks
that have no ground truth yet.  ``projected_usd`` is ``usd_per_task`` times all
of the project's tasks: what running the version on the whole project costs.
"""
from __future__ import annotations

import math
from typing import Any

TOLERANCE = 0.02  # a version scoring within this of the best one is "good enough" (cheapest_good_enough)
MARGIN = TOLERANCE  # non-inferiority margin of the verdict (cheapest_non_inferior); --tolerance is its old name


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int:
    f = _num(value)
    return int(f) if f is not None else 0


def _coverage_notes(have_ledger: bool, calls: int, tasks: int, n_scored: int, notes: list[str]) -> None:
    """Say when the ledger knows nothing of the version, or of only some of the scored tasks."""
    if have_ledger and calls == 0 and tasks == 0:
        notes.append("the ledger has no usage for this version (predictions made elsewhere or before the ledger "
                     "existed): cost unknown")
    if 0 < tasks < n_scored:
        notes.append(f"the ledger has usage for {tasks} tasks but {n_scored} were scored: some predictions were made "
                     "outside this backend")


def cost_section(ledger_summary: dict | None, n_scored: int, n_project_tasks: int) -> dict:
    """Build the report's ``cost`` section from a ledger summary.

    ``ledger_summary`` is ``Ledger.summary(version, project)`` (keys ``calls``,
    ``tasks``, ``input_tokens``, ``output_tokens``, ``usd``, ``usd_complete``,
    ``errors``, ``latency_p50``, ``latency_p95``) or ``None`` when there is no
    ledger.  ``n_scored`` is the number of tasks compared in the report and
    ``n_project_tasks`` the number of tasks in the project.

    Example: 100 tasks pre-labelled for $0.05 in a project of 1,000 tasks::

        >>> s = cost_section({"calls": 100, "tasks": 100, "input_tokens": 40000,
        ...     "output_tokens": 2000, "usd": 0.05, "usd_complete": True,
        ...     "errors": {}, "latency_p50": 0.8, "latency_p95": 1.9}, 90, 1000)
        >>> s["usd_per_task"], s["projected_usd"], s["complete"]
        (0.0005, 0.5, True)

    With an unknown price (``usd_complete`` false) ``usd``, ``usd_per_task``
    and ``projected_usd`` are ``None``; the priced part is kept in
    ``usd_partial`` as a lower bound, and ``notes`` explains.
    """
    notes: list[str] = []
    s = ledger_summary or {}
    if ledger_summary is None:
        notes.append("no usage ledger available: cost unknown")
    calls = _int(s.get("calls"))
    tasks = _int(s.get("tasks"))
    input_tokens = _int(s.get("input_tokens"))
    output_tokens = _int(s.get("output_tokens"))
    errors = {str(k): _int(v) for k, v in (s.get("errors") or {}).items() if _int(v)}

    _coverage_notes(ledger_summary is not None, calls, tasks, n_scored, notes)
    quality = _quality(s, notes)
    usd, usd_partial = _usd(s, tasks > 0 or calls > 0, notes)
    usd_per_task = usd / tasks if usd is not None and tasks > 0 else None
    projected = usd_per_task * n_project_tasks if usd_per_task is not None and n_project_tasks >= 0 else None

    return {
        "calls": calls,
        "tasks": tasks,
        "n_scored": int(n_scored),
        "n_project_tasks": int(n_project_tasks),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_tokens_per_task": input_tokens / tasks if tasks else None,
        "output_tokens_per_task": output_tokens / tasks if tasks else None,
        "usd": usd,
        "usd_per_task": usd_per_task,
        "projected_usd": projected,
        "usd_partial": usd_partial,
        "errors": errors,
        "error_rate": sum(errors.values()) / calls if calls else None,
        "latency": {"p50": _num(s.get("latency_p50")), "p95": _num(s.get("latency_p95"))},
        "complete": usd is not None and tasks > 0,
        "notes": notes,
        **quality,
    }


def _quality(summary: dict, notes: list[str]) -> dict:
    """``{"dropped": {kind: n}, "repaired": n}`` from a ledger summary (a note in ``notes`` when not zero)."""
    dropped = {str(k): _int(v) for k, v in (summary.get("dropped") or {}).items() if _int(v)}
    repaired = _int(summary.get("repaired"))
    if dropped or repaired:
        notes.append(_quality_note(dropped, repaired))
    return {"dropped": dropped, "repaired": repaired}


def _quality_note(dropped: dict[str, int], repaired: int) -> str:
    """The note saying what the backend dropped from or guessed in the answers.

    >>> _quality_note({"spans": 3}, 1)
    'the backend dropped 3 answer regions (spans: 3) and repaired 1 answer (e.g. a taxonomy path guessed from its \
last name); the backend log and the ledger notes say which'
    """
    parts = []
    if dropped:
        kinds = ", ".join(f"{k}: {n}" for k, n in dropped.items())
        parts.append(f"dropped {sum(dropped.values())} answer regions ({kinds})")
    if repaired:
        parts.append(f"repaired {repaired} answer{'s' if repaired != 1 else ''} "
                     "(e.g. a taxonomy path guessed from its last name)")
    return f"the backend {' and '.join(parts)}; the backend log and the ledger notes say which"


def _usd(summary: dict, used: bool, notes: list[str]) -> tuple[float | None, float | None]:
    """(usd, usd_partial) of a ledger summary: usd only when every call was priced, else the priced part
    (a note in ``notes`` says why); both ``None`` when nothing was ``used``."""
    usd_raw = _num(summary.get("usd"))
    if not used:
        return None, None
    if bool(summary.get("usd_complete")) and usd_raw is not None:
        return usd_raw, None
    notes.append(
        "some calls used a model with no known price (add it to the price table or the version's `price`): "
        "USD left out rather than guessed" + (f"; the priced part is ${usd_raw:.4f}" if usd_raw else "")
    )
    return None, usd_raw


def compare_table(reports: list[dict]) -> list[dict]:
    """One row per report, best score first, with cost relative to the best-scoring version.

    Each report is a scoring report with ``version``, ``reference``, ``score``,
    ``n_tasks`` and ``cost`` (a :func:`cost_section`).  Row keys: ``version``,
    ``reference``, ``score``, ``score_delta`` (score minus the best score),
    ``n_tasks`` (the tasks the report looked at, compared or skipped: the report's ``n_tasks``),
    ``n_compared`` (the tasks actually compared: what the score is over), ``usd_per_task``,
    ``projected_usd``, ``relative_cost``
    (``usd_per_task`` / the best version's; ``None`` when either is unknown or the
    best is free), ``best`` (True on the best-scoring row).

    Reports scored against different references are not comparable and raise
    ``ScoringError``.

    Example: v1 scores 0.90 at $0.003/task, v2 scores 0.89 at $0.001/task::

        >>> rows = compare_table([
        ...     {"version": "v1", "reference": "ground_truth", "score": 0.90, "n_tasks": 50, "n_compared": 40,
        ...      "cost": {"usd_per_task": 0.003, "projected_usd": 3.0}},
        ...     {"version": "v2", "reference": "ground_truth", "score": 0.89, "n_tasks": 50,
        ...      "cost": {"usd_per_task": 0.001, "projected_usd": 1.0}}])
        >>> [(r["version"], round(r["relative_cost"], 3), r["n_compared"]) for r in rows]
        [('v1', 1.0, 40), ('v2', 0.333, 50)]
    """
    from core.errors import ScoringError

    if not reports:
        return []
    references = {r.get("reference") for r in reports}
    if len(references) > 1:
        raise ScoringError(
            "cannot compare versions scored against different references "
            f"({', '.join(sorted(map(str, references)))}): score them all against the same one"
        )
    rows = []
    for r in reports:
        cost = r.get("cost") or {}
        rows.append({
            "version": r.get("version"),
            "reference": r.get("reference"),
            "score": _num(r.get("score")),
            "n_tasks": _int(r.get("n_tasks")),
            "n_compared": _int(r.get("n_compared", r.get("n_tasks"))),
            "usd_per_task": _num(cost.get("usd_per_task")),
            "projected_usd": _num(cost.get("projected_usd")),
        })
    rows.sort(key=lambda row: (row["score"] is None, -(row["score"] or 0.0), str(row["version"])))
    best = rows[0]
    for row in rows:
        row["best"] = row is best and best["score"] is not None
        score, top = row["score"], best["score"]
        row["score_delta"] = score - top if score is not None and top is not None else None
        base, mine = best["usd_per_task"], row["usd_per_task"]
        row["relative_cost"] = mine / base if mine is not None and base else None
    return rows


def cheapest_good_enough(rows: list[dict], tolerance: float = TOLERANCE) -> dict | None:
    """The cheapest row whose score is within ``tolerance`` of the best score.

    ``rows`` are :func:`compare_table` rows (or any dicts with ``score`` and
    ``usd_per_task``).  Rows with an unknown score or price are not candidates;
    ties on price go to the higher score.  Returns ``None`` if no row qualifies.

    Example: best 0.90 at $0.003; 0.89 at $0.001 is within 0.02 and cheaper::

        >>> cheapest_good_enough([
        ...     {"version": "v1", "score": 0.90, "usd_per_task": 0.003},
        ...     {"version": "v2", "score": 0.89, "usd_per_task": 0.001},
        ...     {"version": "v3", "score": 0.80, "usd_per_task": 0.0001}])["version"]
        'v2'
    """
    scored = [(score, r) for r in rows if (score := _num(r.get("score"))) is not None]
    if not scored:
        return None
    best = max(score for score, _ in scored)
    candidates = [(price, score, r) for score, r in scored
                  if (price := _num(r.get("usd_per_task"))) is not None and score >= best - tolerance - 1e-12]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c[0], -c[1]))[2]


def cheapest_non_inferior(rows: list[dict], best: str, diffs: dict, margin: float = MARGIN) -> tuple[str | None, list]:
    """The decision: the cheapest version not worse than ``best`` by more than ``margin``.

    ``rows``: dicts with ``version`` and ``usd_per_task`` (``None`` = unknown); ``diffs``:
    version -> ``scoring.stats.PairedDiff`` of mean(version) - mean(best) on their shared
    tasks.  Candidates are the versions other than ``best`` that are not dearer than it,
    cheapest first, unknown prices last (all of them when ``best``'s price is unknown).
    A candidate qualifies when the lower end of its difference's interval is above
    ``-margin`` (non-inferiority), not when its point estimate happens to be close.
    Returns ``(chosen version or None, the candidates in order)``.

    >>> from scoring.stats import PairedDiff
    >>> rows = [{"version": "big", "usd_per_task": 0.003}, {"version": "mini", "usd_per_task": 0.0002},
    ...         {"version": "tiny", "usd_per_task": 0.0001}]
    >>> diffs = {"mini": PairedDiff(412, -0.006, (-0.015, 0.003), 0.2),
    ...          "tiny": PairedDiff(412, -0.01, (-0.05, 0.03), 0.6)}
    >>> cheapest_non_inferior(rows, "big", diffs, 0.02)     # tiny is cheaper, but the data cannot rule out -0.05
    ('mini', ['tiny', 'mini'])
    """
    from scoring.stats import non_inferiority

    top = next((_num(r.get("usd_per_task")) for r in rows if r.get("version") == best), None)
    order = []
    for r in rows:
        price = _num(r.get("usd_per_task"))
        if r.get("version") == best or r.get("version") not in diffs:
            continue
        if top is None or price is None or price <= top:
            order.append((price is None, price or 0.0, r.get("version")))
    versions = [v for _, _, v in sorted(order, key=lambda o: (o[0], o[1]))]
    for v in versions:
        ci = diffs[v].diff_ci
        if non_inferiority(ci[0] if ci else None, margin):
            return v, versions
    return None, versions
