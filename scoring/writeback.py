"""Write per-task agreement back to Label Studio as predictions with scores.

One *evaluation* = one (version, reference) pair, e.g. ``v-good`` against
``ground_truth``.  Each scoring run with write-back writes, for every compared
task, one prediction:

* ``model_version`` = ``eval(<version> vs <reference>) @ <UTC time of the run>``
  -- the evaluation's name (``evaluation_name``) plus the run's time;
* ``score`` = the task's agreement (0..1), which the Data Manager shows in its
  "Prediction score" column when that model version is the project's current one;
* ``result`` = the scored version's own regions, so a reviewer opening the task
  sees what the model said.

Replacing, not duplicating: the run's predictions are written under a new name
first; only when all of them are in (verified by counting) are the older runs of
the same evaluation deleted (``DELETE /api/projects/{id}/model-versions/``).  So

* a rerun leaves exactly one run of the evaluation (same counts as before);
* a failure while writing (Label Studio unreachable after retries) deletes what
  this run wrote and leaves the previous run untouched: nothing partial;
* a crash (killed process) leaves the previous run untouched plus some
  predictions under the new name; the next run deletes every older run of the
  evaluation, so it repairs the counts.

The project's current model version (Settings → Annotation → Prelabeling) decides
which predictions feed the "Prediction score" column (Label Studio 1.23.2 averages
only predictions of that version).  ``make_current=True`` switches it to the new
run; when the current one was an older run of this evaluation it follows the new
run automatically (otherwise Label Studio would reset it to none on delete).

A Data Manager tab "Agreement: <version> vs <reference>" is created (or updated)
with the filter *Prediction model versions contains eval(<version> vs <reference>)*,
the order *Prediction score ascending* (lowest agreement first) and the
"Prediction score" column shown.  The user-facing steps are in the README
("Write-back: reviewing the lowest-agreement tasks").
"""
from __future__ import annotations

import copy
import logging
from datetime import datetime, timezone
from typing import Callable

from scoring.errors import LabelStudioError
from scoring.labelstudio import LabelStudioClient

log = logging.getLogger(__name__)

SHOWN_COLUMNS = ("predictions_score", "predictions_model_versions")


def evaluation_name(version: str, against: str) -> str:
    """The stable name of an evaluation, the prefix of its runs' model versions.

    >>> evaluation_name("v-good", "ground_truth")
    'eval(v-good vs ground_truth)'
    """
    return f"eval({version} vs {against})"


def tab_title(version: str, against: str) -> str:
    """Title of the Data Manager tab of an evaluation.

    >>> tab_title("v-good", "ground_truth")
    'Agreement: v-good vs ground_truth'
    """
    return f"Agreement: {version} vs {against}"


def is_run_of(base: str, model_version: str) -> bool:
    """True when ``model_version`` is a run of the evaluation ``base`` (or the bare name).

    >>> is_run_of("eval(a vs b)", "eval(a vs b) @ 2026-01-02 03:04:05")
    True
    >>> is_run_of("eval(a vs b)", "eval(a vs b2) @ 2026-01-02 03:04:05")
    False
    """
    return model_version == base or model_version.startswith(base + " @ ")


def run_name(base: str, when: datetime | None = None, taken: set[str] | frozenset = frozenset()) -> str:
    """The model version of one run: ``<base> @ <UTC time>``, with ``#2``, ``#3`` ... if taken.

    >>> run_name("eval(a vs b)", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    'eval(a vs b) @ 2026-01-02 03:04:05'
    """
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    name = f"{base} @ {when:%Y-%m-%d %H:%M:%S}"
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} #{n}"
    return candidate


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
        result = results.get(row.get("prediction_id"), [])
        out.append({"task": row["id"], "model_version": model_version, "score": float(row["score"]),
                    "result": copy.deepcopy(result)})
    return out


def tab_data(client: LabelStudioClient, project_id: int, base: str) -> dict:
    """Data Manager tab settings: filter to the evaluation, lowest agreement first, score column shown."""
    hidden = []
    for col in client.columns(project_id):
        vis = col.get("visibility_defaults")
        if not vis or col.get("id") == "data":
            continue
        cid = "tasks:" + ("data." if col.get("parent") == "data" else "") + str(col["id"])
        if col["id"] in SHOWN_COLUMNS:
            continue
        if not vis.get("explore", True):
            hidden.append(cid)
    hidden_labeling = [c for c in hidden]
    return {
        "filters": {"conjunction": "and", "items": [{
            "filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List",
            "value": [base]}]},  # a list: Label Studio iterates it (a bare string would match by letters)
        "ordering": ["tasks:predictions_score"],
        "hiddenColumns": {"explore": hidden, "labeling": hidden_labeling},
    }


def write_back(client: LabelStudioClient, project_id: int, report: dict, tasks: list[dict], *,
               version: str | None = None, against: str | None = None, make_current: bool = False,
               chunk: int = 1000, progress: bool = False, on_chunk: Callable[[int], None] | None = None,
               when: datetime | None = None) -> dict:
    """Write the report's per-task agreement to Label Studio, replacing older runs of the evaluation.

    Returns ``{"model_version", "evaluation", "written", "replaced": {old: n}, "tab": {"id", "title"},
    "current_model_version", "previous_model_version"}``.  Raises ``LabelStudioError`` (after
    removing this run's predictions) when the predictions cannot all be written.
    """
    version = version or report["version"]
    against = against or report.get("reference") or "ground_truth"
    pid = int(project_id)
    base = evaluation_name(version, against)
    counts = client.model_version_counts(pid)
    name = run_name(base, when, taken=set(counts))
    stale = {mv: n for mv, n in counts.items() if is_run_of(base, mv)}
    previous = client.project(pid)["model_version"] or None
    preds = evaluation_predictions(report, tasks, name)

    for attempt in (1, 2):
        try:
            client.import_predictions(pid, preds, chunk=chunk, progress=progress, on_chunk=on_chunk)
            written = client.model_version_counts(pid).get(name, 0)
        except LabelStudioError:
            _discard(client, pid, name)
            raise
        if written == len(preds):
            break
        # A chunk retried after a lost answer can be stored twice: start this run over once.
        log.warning("evaluation %s: %d predictions stored for %d written; rewriting", name, written, len(preds))
        _discard(client, pid, name)
        if attempt == 2:
            raise LabelStudioError(f"Label Studio at {client.url} stored {written} of {len(preds)} evaluation "
                                   f"predictions for '{name}' twice in a row; nothing was kept, rerun to retry")

    current = previous
    if make_current or (previous is not None and previous in stale):
        client.set_model_version(pid, name)
        current = name
    for mv in stale:
        client.delete_model_version(pid, mv)
    title = tab_title(version, against)
    view_id = client.upsert_view(pid, title, tab_data(client, pid, base))
    return {"model_version": name, "evaluation": base, "written": written, "replaced": stale,
            "tab": {"id": view_id, "title": title}, "current_model_version": current,
            "previous_model_version": previous}


def _discard(client: LabelStudioClient, pid: int, name: str) -> None:
    try:
        client.delete_model_version(pid, name)
    except LabelStudioError as exc:  # Label Studio is gone: the next run cleans up this run's leftovers
        log.warning("could not remove the partial evaluation %s: %s", name, exc)
