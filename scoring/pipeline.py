"""Score a prompt version of a live Label Studio project: pull → score → cost → write-back → history.

    report = score_project(settings, 7, "v2")                                          # against ground truth
    report = score_project(settings, 7, "v2", ScoreOptions(against="v1"))              # model vs model
    report = score_project(settings, 7, "v2", ScoreOptions(write_back=True))           # agreement into Label Studio
    result = compare_versions(settings, 7, ["v1", "v2", "v3"])                         # quality, cost, paired diffs
    ids = create_candidates(client, 7, report, tasks, n=20)                            # ground-truth candidates

The report is the engine's JSON contract (``scoring.engine.evaluate``) plus
``project``, ``run_id``, ``n_project_tasks``, ``cost`` (``scoring.cost.cost_section``),
``lowest`` (the ``LOWEST_N`` lowest-agreement tasks with their Label Studio links; against
another version: the most-disagreeing tasks), ``write_back`` (what was written,
or None) and ``candidates`` (None unless asked for).  The run is stored in the
history (``scoring.history``) after everything else succeeded, so a failed run
leaves no record and (see ``scoring.writeback``) nothing partial in Label Studio.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from core.errors import ScoringError
from core.labelstudio import LabelStudioClient
from core.locks import LOCK_WAIT
from core.settings import Settings
from scoring.compare import project_estimate
from scoring.cost import MARGIN, cost_section
from scoring.engine import GROUND_TRUTH, compile_schema, evaluate_schema
from scoring.uncertainty import IntervalOptions
from scoring.writeback import WRITE_CHUNK

if TYPE_CHECKING:
    from scoring.config import ScoringConfig

log = logging.getLogger(__name__)

LOWEST_N = 20  # lowest-agreement tasks a report lists (the ``lowest`` section, the HTML report's table)


@dataclass(frozen=True)
class ScoreOptions:
    """How :func:`score_project` scores, and what it does besides; the defaults score against
    ground truth, write nothing to Label Studio and store the run in the history.

    >>> ScoreOptions(against="v1", candidates=20).write_back
    False
    """

    against: str = GROUND_TRUTH             # the reference: ground truth or another version's predictions
    config: ScoringConfig | None = None     # per-control metrics and weights (scoring.config)
    write_back: bool = False                # per-task agreement into Label Studio (scoring.writeback)
    make_current: bool = False              # with write_back: the evaluation becomes the current model version
    candidates: int = 0                     # > 0: create that many ground-truth candidates (model vs model only)
    chunk: int = WRITE_CHUNK                # predictions per write-back import request
    on_chunk: Callable[[int], None] | None = None  # called after each written chunk
    progress: bool = True                   # progress bars on stderr
    record: bool = True                     # store the run in the history
    intervals: IntervalOptions = IntervalOptions()  # level and seed of the report's intervals
    proxy: str | None = None                # a strong version run on all tasks: adds the project-wide "ppi" estimate
    lock_wait: float = LOCK_WAIT            # s to wait for an identical run writing to Label Studio; 0: do not wait


@dataclass(frozen=True)
class CompareOptions:
    """How :func:`compare_versions` scores the versions; the defaults compare against ground truth.

    >>> CompareOptions().margin, CompareOptions(margin=0.05).tolerance
    (0.02, 0.05)
    """

    against: str = GROUND_TRUTH             # the one reference every version is scored against
    config: ScoringConfig | None = None     # per-control metrics and weights (scoring.config)
    margin: float = MARGIN                  # non-inferiority margin of the verdict (scoring.compare)
    progress: bool = True                   # progress bars on stderr
    record: bool = True                     # store each version's run in the history
    intervals: IntervalOptions = IntervalOptions()  # level and seed of every interval

    @property
    def tolerance(self) -> float:
        """The margin's old name."""
        return self.margin


def _cost(settings: Settings, version: str, project_id, n_scored: int, n_project_tasks: int) -> dict:
    """The cost section from the prediction ledger: this project's records, else the version's overall ones."""
    try:
        from backend.ledger import open_ledger

        ledger = open_ledger(settings)
        try:
            summary = ledger.summary(version, project=str(project_id))
            note = None
            if not summary.get("calls"):
                overall = ledger.summary(version)
                if overall.get("calls"):
                    summary = overall
                    note = (f"no ledger records of {version} for project {project_id}; "
                            "cost per task from all projects")
        finally:
            ledger.close()
    except Exception as exc:  # a ledger problem must not hide the scores
        log.warning("prediction ledger unavailable: %s", exc)
        section = cost_section(None, n_scored, n_project_tasks)
        section.setdefault("notes", []).append(f"prediction ledger unavailable ({type(exc).__name__})")
        return section
    section = cost_section(summary, n_scored, n_project_tasks)
    if note:
        section.setdefault("notes", []).append(note)
    return section


def lowest_tasks(report: dict, client: LabelStudioClient | None, project_id, n: int = LOWEST_N) -> list[dict]:
    """The ``n`` compared tasks of lowest agreement with their Label Studio links: only tasks below full
    agreement (1.0; an empty list when every compared task agrees fully), lowest first, ties by task id
    (numeric ids as numbers: 2 before 10).

    >>> tasks = [{"id": i, "score": s} for i, s in ((2, 1.0), (10, 0.5), (5, 0.75), (2, 0.5), (20, 0.5))]
    >>> lowest_tasks({"tasks": tasks}, None, 1, 3)
    [{'id': 2, 'score': 0.5, 'url': None}, {'id': 10, 'score': 0.5, 'url': None}, {'id': 20, 'score': 0.5, 'url': None}]
    >>> lowest_tasks({"tasks": [{"id": 1, "score": 1.0}]}, None, 1)
    []
    """
    def order(row: dict) -> tuple:
        text = str(row["id"])
        return (row["score"], (0, int(text), "") if text.isdecimal() else (1, 0, text))

    rows = sorted((r for r in report.get("tasks", ()) if isinstance(r.get("score"), (int, float))
                   and r["score"] < 1.0 - 1e-9), key=order)   # 1 - 1e-9: float sums of 1.0s may fall a hair short
    return [{"id": r["id"], "score": r["score"], "url": client.task_url(project_id, r["id"]) if client else None}
            for r in rows[:n]]


def create_candidates(client: LabelStudioClient, project_id, report: dict, tasks: list[dict], n: int,
                      progress: bool = False) -> list[dict]:
    """Turn the ``n`` *most-agreeing* tasks of a model-vs-model report into ground-truth candidates.

    Where two versions agree most, their answer is most likely right, so those tasks are
    the safest to bootstrap a ground-truth set from.  For each chosen task an annotation
    is created from the scored version's prediction (``parent_prediction`` links it),
    with ``ground_truth`` **False**: a person confirms it (review it, then "Mark as
    ground truth").  Tasks that already have an annotation are left alone, so a rerun
    adds no duplicates.  Returns ``[{"task", "annotation", "score"}]``.
    """
    if report.get("reference") == GROUND_TRUTH:
        raise ScoringError("ground-truth candidates come from comparing two versions: use --against VERSION_B")
    annotated = {t["id"] for t in tasks if any(not a.get("was_cancelled") for a in (t.get("annotations") or ()))}
    results = {p["id"]: p.get("result") or []
               for t in tasks for p in (t.get("predictions") or ()) if isinstance(p, dict)}
    rows = [r for r in report.get("tasks", ()) if r.get("score") is not None and r["id"] not in annotated
            and r.get("prediction_id") in results]
    rows.sort(key=lambda r: (-r["score"], r["id"]))
    chosen = rows[:max(0, n)]
    ids = client.create_annotations(project_id, [
        {"task": r["id"], "result": results[r["prediction_id"]], "parent_prediction": r["prediction_id"]}
        for r in chosen
    ], ground_truth=False, progress=progress)
    return [{"task": r["id"], "annotation": a, "score": r["score"]} for r, a in zip(chosen, ids, strict=False)]


def _record(settings: Settings, report: dict, project_id, started: datetime, **extra) -> str:
    from scoring.history import open_history, run_from_report

    run = run_from_report(report, project=project_id, started_at=started, finished_at=datetime.now(timezone.utc),
                          **extra)
    return open_history(settings).add(run)


def score_project(settings: Settings, project_id, version: str, options: ScoreOptions | None = None, *,
                  client: LabelStudioClient | None = None, pulled: tuple | None = None) -> dict:
    """Pull a project, score ``version``, add cost, optionally write back; return the report.

    ``options`` (:class:`ScoreOptions`) says against what, with which scoring config, and
    what else to do (write back, make current, ground-truth candidates, record the run).
    ``client`` reuses a Label Studio client; ``pulled`` = ``(tasks, label_config)`` reuses
    a pull (``compare_versions``; never with write-back: the pull must happen under the lock).

    A run that writes into Label Studio (write-back or candidates) holds the lock of
    (project, version, reference) from the pull to the history record (:func:`run_lock`),
    so an identical run -- the worker's ``score_job`` or another CLI run -- waits for it
    (``options.lock_wait`` s at most, then ``core.locks.LockBusy``).
    """
    opts = options or ScoreOptions()
    if opts.candidates and opts.against == GROUND_TRUTH:
        raise ScoringError("--candidates needs --against VERSION_B: candidates come from two versions that agree")
    if not (opts.write_back or opts.candidates):
        return _score(settings, project_id, version, opts, client=client, pulled=pulled)
    if pulled is not None:
        raise ScoringError("a run that writes to Label Studio pulls the project itself, under its lock")
    with run_lock(settings, project_id, version, opts.against, wait=opts.lock_wait):
        return _score(settings, project_id, version, opts, client=client, pulled=None)


def run_lock(settings: Settings, project_id, version: str, against: str, *, wait: float = LOCK_WAIT):
    """The lock of one (project, version, reference): ``core.locks.hold`` on ``scoring.jobs.lock_key``,
    in Redis inside an RQ job or with ``REDIS_URL``, else a file lock under ``DATA_DIR``."""
    from core.locks import hold
    from core.queue import current_connection
    from scoring.jobs import lock_key

    what = f"scoring run of project {project_id} version {version} against {against}"
    return hold(lock_key(project_id, version, against), wait=wait, what=what, directory=settings.data_dir,
                connection=current_connection(settings, "the scoring lock", required=False))


def _score(settings: Settings, project_id, version: str, opts: ScoreOptions, *,
           client: LabelStudioClient | None, pulled: tuple | None) -> dict:
    """:func:`score_project` without the lock."""
    started = datetime.now(timezone.utc)
    client = client or LabelStudioClient(settings)
    pid = int(project_id)
    tasks, label_config = pulled or client.pull_project(pid, progress=opts.progress)
    schema = compile_schema(label_config, opts.config)
    report = evaluate_schema(tasks, schema, version, opts.against, intervals=opts.intervals)
    if opts.proxy:
        report["ppi"] = project_estimate(tasks, schema, report, opts.proxy, opts.intervals.level)
    report["project"] = pid
    report["n_project_tasks"] = len(tasks)
    report["cost"] = _cost(settings, version, pid, report["n_compared"], len(tasks))
    report["lowest"] = lowest_tasks(report, client, pid)
    report["label_studio"] = {"url": client.url, "project": pid}
    report["write_back"] = _write_back(client, pid, report, tasks, opts) if opts.write_back else None
    report["candidates"] = None
    if opts.candidates:
        report["candidates"] = create_candidates(client, pid, report, tasks, opts.candidates, progress=opts.progress)
    report["run_id"] = _record(settings, report, pid, started, write_back=opts.write_back) if opts.record else None
    return report


def _write_back(client: LabelStudioClient, pid: int, report: dict, tasks: list[dict], opts: ScoreOptions) -> dict:
    from scoring.writeback import WriteOptions, write_back

    return write_back(client, pid, report, tasks, WriteOptions(
        version=report["version"], against=opts.against, make_current=opts.make_current, chunk=opts.chunk,
        progress=opts.progress, on_chunk=opts.on_chunk))


def compare_versions(settings: Settings, project_id, versions: list[str], options: CompareOptions | None = None, *,
                     client: LabelStudioClient | None = None) -> dict:
    """Score several versions against the same reference from one pull; quality and cost side by side.

    Returns ``{"project", "reference", "reports": [report per version], "table": compare_table rows,
    "cheapest_good_enough": the table row of the version the verdict names (non-inferior within
    ``options.margin``) or None, "alpha": {control: alpha across all versions (and the reference)}}``
    plus the paired comparison of ``scoring.compare.paired_comparison`` (``versions``, ``pairs``,
    ``verdict``, ``margin``, ``level``, ``non_inferior``).
    """
    from scoring.compare import PairOptions, paired_comparison
    from scoring.cost import compare_table
    from scoring.engine import alpha_multi

    opts = options or CompareOptions()
    against = opts.against
    versions = list(dict.fromkeys(versions))
    if len(versions) < 2 and against == GROUND_TRUTH:
        raise ScoringError("compare needs at least two versions (--versions A B ...)")
    if against in versions:
        raise ScoringError(f"'{against}' is the reference: leave it out of --versions")
    client = client or LabelStudioClient(settings)
    pid = int(project_id)
    pulled = client.pull_project(pid, progress=opts.progress)
    each = ScoreOptions(against=against, config=opts.config, progress=opts.progress, record=opts.record,
                        intervals=opts.intervals)
    reports = [score_project(settings, pid, v, each, client=client, pulled=pulled) for v in versions]
    tasks, label_config = pulled
    schema = compile_schema(label_config, opts.config)
    sources = versions + [against]
    alpha = {c.name: alpha_multi(tasks, label_config, sources, c.name) for c in schema.controls if c.single_choice}
    rows = compare_table(reports)
    paired = paired_comparison(reports, {r["version"]: r["usd_per_task"] for r in rows},
                               PairOptions(opts.margin, opts.intervals.level, opts.intervals.seed))
    pick = next((r for r in rows if r["version"] == paired["non_inferior"]), None)
    return {"project": pid, "reference": against, "reports": reports, "table": rows,
            "cheapest_good_enough": pick, "alpha": alpha, **paired}
