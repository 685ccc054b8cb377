"""Write per-task agreement back to Label Studio as predictions with scores.

One *evaluation* = one (version, reference) pair, e.g. ``v-good`` against
``ground_truth``.  Its predictions all have the model version
``eval(<version> vs <reference>)`` (``evaluation_name``), one per compared task:

* ``score`` = the task's agreement (0..1), which the Data Manager shows in its
  "Prediction score" column when that model version is the project's current one
  (Label Studio 1.23.2 averages only predictions of the current version);
* ``result`` = the scored version's own regions, so a reviewer opening the task
  sees what the model said.

Re-running *reconciles* instead of rewriting: the wanted predictions are compared
with the ones Label Studio has (from the same pull), and only tasks whose score or
regions changed get a new prediction (bulk import) before their old one is deleted;
predictions of tasks no longer compared are deleted.  Unchanged tasks cost nothing.
When most of a large evaluation changed, deleting one by one (about 80 ms each) would
be slow, so the whole version is deleted in bulk first and written again
(``REWRITE_MIN``; Label Studio still spends about 6.5 ms per deleted prediction).

Consistency: an interruption (a crash, Label Studio going away) leaves each task with
its old evaluation prediction, its new one, or -- briefly -- both; in the bulk
rewrite some tasks may have none.  The next run compares again and repairs: every
compared task ends with exactly one prediction (verified by counting), nothing else.
When the bulk import itself fails, the predictions it created in this run are
removed again before the error is raised.

Each evaluation has a Data Manager tab (``scoring.evaltabs``): "★ <version> vs GT" while it is the
*active* evaluation -- the project's current model version, the one whose scores the "Prediction
score" column shows -- filtered to the evaluation, lowest agreement first; "☆ <version> vs GT
(inactive)" otherwise, without the score column and its sort (they would show the active
evaluation's scores).  ``WriteOptions(make_current=True)`` makes the evaluation active
(``scoring.evaltabs.activate``: every evaluation tab is retitled, and the model version current
before any evaluation -- the ML backend's -- is remembered for the way back).  The reviewer's steps
are in the README ("Write-back: reviewing the lowest-agreement tasks").
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Callable

from core.errors import LabelStudioError
from core.labelstudio import LabelStudioClient
from scoring.evaltabs import (  # noqa: F401  (evaluation_name, tab_title: re-exported, used by callers)
    CURRENT_MARK,
    activate,
    evaluation_name,
    evaluation_tabs,
    refresh_tabs,
    remembered_backend,
    tab_title,
)

log = logging.getLogger(__name__)

WRITE_CHUNK = 10_000  # predictions per import request (see write_back)
REWRITE_MIN = 200     # replace in bulk when at least this many, and at least half, of the old ones go
SCORE_EPS = 1e-9


def _canon(result) -> str:
    return json.dumps(result or [], sort_keys=True, separators=(",", ":"), default=str)


def evaluation_predictions(report: dict, tasks: list[dict], model_version: str) -> list[dict]:
    """One prediction per compared task of ``report``: score = agreement, result = the version's regions.

    Example: a report row ``{"id": 7, "score": 0.75, "prediction_id": 31}`` and task 7
    holding prediction 31 with regions R give
    ``{"task": 7, "model_version": model_version, "score": 0.75, "result": R}``.
    """
    results: dict = {}
    for task in tasks:
        for pred in task.get("predictions") or ():
            if isinstance(pred, dict) and pred.get("id") is not None:
                results[pred["id"]] = pred.get("result") or []
    out = []
    for row in report.get("tasks", ()):
        if row.get("score") is None:
            continue
        out.append({"task": row["id"], "model_version": model_version, "score": float(row["score"]),
                    "result": results.get(row.get("prediction_id"), [])})
    return out


def existing_predictions(tasks: list[dict], model_version: str) -> list[dict]:
    """The predictions of ``model_version`` in pulled tasks, as ``{"id", "task", "score", "result"}``."""
    out = []
    for task in tasks:
        for pred in task.get("predictions") or ():
            if isinstance(pred, dict) and pred.get("model_version") == model_version:
                out.append({"id": pred["id"], "task": task["id"], "score": pred.get("score"),
                            "result": pred.get("result") or []})
    return out


@dataclass
class Plan:
    """What to change so that Label Studio holds exactly the wanted predictions."""

    create: list[dict] = field(default_factory=list)   # predictions to import
    delete: list[int] = field(default_factory=list)    # prediction ids to remove
    keep: int = 0                                       # tasks already right
    existing_ids: set = field(default_factory=set)      # ids of the version's predictions now
    wanted: int = 0                                     # predictions of the version wanted

    def rewrite(self, rewrite_min: int = REWRITE_MIN) -> bool:
        """Replace the whole version in bulk (most of a large evaluation changed)."""
        return len(self.delete) >= rewrite_min and 2 * len(self.delete) >= len(self.existing_ids)


def plan(wanted: list[dict], existing: list[dict]) -> Plan:
    """Compare wanted with existing predictions task by task.

    A task keeps one existing prediction equal to the wanted one (same score within
    1e-9, same regions); every other existing prediction of the version is deleted;
    tasks without an equal one get the wanted one created.

    >>> p = plan([{"task": 1, "score": 0.5, "result": []}, {"task": 2, "score": 1.0, "result": []}],
    ...          [{"id": 10, "task": 1, "score": 0.5, "result": []},
    ...           {"id": 11, "task": 1, "score": 0.5, "result": []},
    ...           {"id": 12, "task": 2, "score": 0.25, "result": []},
    ...           {"id": 13, "task": 3, "score": 1.0, "result": []}])
    >>> [c["task"] for c in p.create], sorted(p.delete), p.keep
    ([2], [11, 12, 13], 1)
    """
    by_task: dict = {}
    for e in existing:
        by_task.setdefault(e["task"], []).append(e)
    out = Plan(existing_ids={e["id"] for e in existing}, wanted=len(wanted))
    seen = set()
    for w in wanted:
        seen.add(w["task"])
        olds = by_task.get(w["task"], [])
        target = _canon(w["result"])
        match = next((o for o in olds if o.get("score") is not None and abs(o["score"] - w["score"]) <= SCORE_EPS
                      and _canon(o["result"]) == target), None)
        if match is None:
            out.create.append(w)
        else:
            out.keep += 1
        out.delete += [o["id"] for o in olds if o is not match]
    for task, olds in by_task.items():
        if task not in seen:
            out.delete += [o["id"] for o in olds]
    return out


def review_title(version: str) -> str:
    """The review-queue tab of a version: ``"Review: v2, least confident first"``."""
    return f"Review: {version}, least confident first"


def review_tab_data(version: str) -> dict:
    """The review queue: tasks with a prediction of ``version`` and no annotation, lowest prediction score
    first.  (The "Prediction score" column and its sort follow the project's current model version.)"""
    return {
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
             "value": [version]},
            {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}]},
        "ordering": ["tasks:predictions_score"],
    }


def upsert_review_tab(client: LabelStudioClient, project_id: int, version: str) -> dict:
    """Create or update the review-queue tab of ``version``; returns ``{"id", "title"}``."""
    title = review_title(version)
    return {"id": client.upsert_view(project_id, title, review_tab_data(version)), "title": title}


@dataclass(frozen=True)
class WriteOptions:
    """How :func:`write_back` writes; the defaults take the evaluation's names from the report.

    >>> WriteOptions().chunk, WriteOptions().rewrite_min
    (10000, 200)
    """

    version: str | None = None           # the scored version (default: the report's ``version``)
    against: str | None = None           # the reference (default: the report's ``reference``)
    make_current: bool = False           # make the evaluation the project's current model version
    chunk: int = WRITE_CHUNK             # predictions per import request
    rewrite_min: int = REWRITE_MIN       # replace in bulk from this many deletions (and at least half)
    progress: bool = False               # progress bars on stderr
    on_chunk: Callable[[int], None] | None = None    # progress hook: called with the number created per chunk
    on_delete: Callable[[int], None] | None = None   # progress hook: called with the number deleted


@dataclass(frozen=True)
class _Target:
    """One evaluation of one project, and how to write it."""

    client: LabelStudioClient
    pid: int
    name: str      # evaluation_name(version, against): the predictions' model version
    opts: WriteOptions


def write_back(client: LabelStudioClient, project_id: int, report: dict, tasks: list[dict],
               options: WriteOptions | None = None) -> dict:
    """Make Label Studio hold exactly one evaluation prediction per compared task of ``report``.

    ``tasks`` is the pull the report was computed from (its evaluation predictions are
    the starting state).  ``options.chunk`` predictions go in one import request: it is large on
    purpose, because Label Studio 1.23.2 recounts the counters of *every* task of the
    project after each import request (about 10 s per request at 10,000 tasks).

    Returns ``{"model_version", "mode": "incremental"|"rewrite", "written", "created", "deleted",
    "unchanged", "rejected", "tab": {"id", "title", "active"}, "current_model_version",
    "previous_model_version", "backend_model_version"}``: ``previous_model_version`` is the project's model
    version before this run, ``backend_model_version`` the one before any evaluation was made current (the way
    back, ``activate --backend``; None when unknown).  ``written`` is the number of evaluation predictions in
    Label Studio afterwards.  Raises ``LabelStudioError`` when Label Studio fails or the
    counts do not come out right after a repair pass.
    """
    opts = options or WriteOptions()
    version = opts.version or report["version"]
    against = opts.against or report.get("reference") or "ground_truth"
    pid = int(project_id)
    t = _Target(client, pid, evaluation_name(version, against), opts)
    wanted = evaluation_predictions(report, tasks, t.name)
    previous = client.project(pid)["model_version"] or None
    views = client.views(pid)
    tab = evaluation_tabs(views).get(t.name)
    # A bulk rewrite clears the project's current version when it is this evaluation; the tab
    # remembers it, so that a run after a crash in that window can put it back.
    was_current = previous == t.name or (previous is None and bool(tab and tab["data"].get(CURRENT_MARK)))
    first = plan(wanted, existing_predictions(tasks, t.name))
    mode, stored, totals = _reconcile(t, first, wanted, tab, was_current)
    rejected = len(wanted) - stored if stored < len(wanted) else 0
    if rejected:  # Label Studio 1.23.2 logs and drops predictions its validator rejects
        log.warning("evaluation %s: Label Studio rejected %d of %d predictions (see its log)", t.name, rejected,
                    len(wanted))
    current, backend, tabs = _settle_tabs(t, previous, was_current, remembered_backend(views))
    return {"model_version": t.name, "mode": mode, "written": stored, "created": totals["created"],
            "deleted": totals["deleted"], "unchanged": 0 if first.rewrite(opts.rewrite_min) else first.keep,
            "rejected": rejected, "tab": tabs[t.name], "current_model_version": current,
            "previous_model_version": previous, "backend_model_version": backend}


def _settle_tabs(t: _Target, previous: str | None, was_current: bool,
                 backend: str | None) -> tuple[str | None, str | None, dict]:
    """Make the evaluation current when asked (or put it back after a bulk rewrite), then title every
    evaluation tab after the current model version; return (current, backend version, tabs)."""
    if t.opts.make_current:
        done = activate(t.client, t.pid, t.name, previous=previous)
        return done["current"], done["backend_model_version"], done["tabs"]
    current = previous
    if was_current:
        if t.client.project(t.pid)["model_version"] != t.name:  # a bulk delete of the current version clears it
            t.client.set_model_version(t.pid, t.name)
        current = t.name
    return current, backend or None, refresh_tabs(t.client, t.pid, current, ensure=t.name)


def _reconcile(t: _Target, first: Plan, wanted: list[dict], tab: dict | None,
               was_current: bool) -> tuple[str, int, dict]:
    """Carry out ``first``, count, and reconcile once more when the count is off; return (mode, stored, totals)."""
    client, pid, name = t.client, t.pid, t.name
    totals = {"created": 0, "deleted": 0}
    mode, stored = "incremental", 0
    for attempt in (1, 2):
        p = first if attempt == 1 else plan(wanted, client.predictions_of_version(pid, name))
        mode = "rewrite" if p.rewrite(t.opts.rewrite_min) else "incremental"
        if mode == "rewrite" and was_current and not (tab and tab["data"].get(CURRENT_MARK)):
            tab = {**refresh_tabs(client, pid, name, ensure=name)[name], "data": {CURRENT_MARK: True}}
        log.info("evaluation %s: %d to create, %d to delete, %d unchanged (%s)", name, len(p.create), len(p.delete),
                 p.keep, mode)
        created, deleted = _execute(t, p, mode, wanted)
        totals["created"] += created
        totals["deleted"] += deleted
        stored = client.model_version_counts(pid).get(name, 0)
        expected = created if mode == "rewrite" else len(p.existing_ids) - len(p.delete) + created
        if stored == expected:
            break
        # Off: a chunk stored twice after a lost answer, or another writer.  Look at what is
        # really there and reconcile once more.
        log.warning("evaluation %s: %d predictions stored, %d expected; reconciling again", name, stored, expected)
        if attempt == 2:
            raise LabelStudioError(f"Label Studio at {client.url}: the evaluation '{name}' of project {pid} has "
                                   f"{stored} predictions, {expected} expected, after a repair pass; rerun to repair")
    return mode, stored, totals


def _execute(t: _Target, p: Plan, mode: str, wanted: list[dict]) -> tuple[int, int]:
    """Carry out a plan; return (created, deleted)."""
    client, pid, o = t.client, t.pid, t.opts
    if mode == "rewrite":
        deleted = client.delete_model_version(pid, t.name)
        created = client.import_predictions(pid, wanted, chunk=o.chunk, progress=o.progress, on_chunk=o.on_chunk)
        return created, deleted
    created = 0
    if p.create:
        try:
            created = client.import_predictions(pid, p.create, chunk=o.chunk, progress=o.progress, on_chunk=o.on_chunk)
        except LabelStudioError:
            _rollback(t, p)
            raise
    deleted = client.delete_predictions(p.delete, progress=o.progress, on_delete=o.on_delete) if p.delete else 0
    return created, deleted


def _rollback(t: _Target, p: Plan) -> None:
    """Remove what a failed import created in this run (the version's predictions not there before); best effort."""
    try:
        fresh = [e["id"] for e in t.client.predictions_of_version(t.pid, t.name) if e["id"] not in p.existing_ids]
        if fresh:
            t.client.delete_predictions(fresh)
    except LabelStudioError as exc:
        log.warning("could not remove the predictions of the failed write-back of %s: %s (the next run will)",
                    t.name, exc)
