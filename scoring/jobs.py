"""RQ jobs of the scoring worker, and how to enqueue them so that duplicates fold together.

Run them with ``python -m scoring worker`` (it also runs RQ's scheduler, which
moves delayed and retried jobs onto the queue when they are due).

Jobs, by dotted path (what an enqueuer that cannot import ``scoring`` uses)
---------------------------------------------------------------------------
``scoring.jobs.score_job(project_id, version, against="ground_truth", write_back=True)``
    Pulls the project from Label Studio, scores ``version`` against ground
    truth or another version, records the run in the history and (with
    ``write_back``) writes per-task agreement back.  Returns a small summary
    dict.  Enqueue it with :func:`enqueue_score` (a :class:`ScoreRun`): job id
    :func:`score_job_id` (``score-<project>-<version>-<against>[-wb]``),
    timeout ``SCORE_TIMEOUT``, ``Retry(max=3, interval=[30, 120, 600])``.
    Errors a retry cannot fix (configuration, unknown version, no ground truth)
    fail at once instead of being retried.

``scoring.jobs.rescore_on_annotation(project_id)``
    Enqueued by the ML backend (``backend.jobs.JobQueue.enqueue_rescore``) when
    a ground-truth annotation is created, updated or deleted.  A fast
    trampoline: it enqueues ``score_job(project, v, "ground_truth", True)``
    for every version ``v`` the project has been scored with against ground
    truth (from the run history) plus the version the backend serves for the
    project, and returns.  ``backend.jobs.JobQueue.enqueue_rescore`` is the one
    enqueuer (job id ``rescore-<project_id>``, ``RESCORE_DEBOUNCE`` s ahead, events
    folded into a scheduled, queued or running job); :func:`enqueue_rescore` here
    applies ``backend.jobs.is_ground_truth_event`` and calls it.

``scoring.jobs.scheduled_score(project_id, version, against="ground_truth", write_back=True)``
    What the cron schedule (``scoring.schedule``) registers: it enqueues
    ``score_job`` through :func:`enqueue_score`, so a schedule never piles up
    runs behind a slow one.

Unique ids and exclusion
------------------------
A deterministic job id per (project, version, reference, write-back) makes a
second request for the same work fold into a pending job (status scheduled,
queued or deferred: it has not read Label Studio yet, so it will see the
newest data).  A request that arrives while that job runs gets one follow-up
slot, ``<id>-next`` (``core.queue.enqueue_unique`` with the ids ``[<id>,
<id>-next]``; the same function folds the backend's rescore).  Inside
``score_job`` with write-back, ``scoring.pipeline.score_project`` takes the lock per
(project, version, reference) (``llm-prelabel:lock:...``, ``core.locks``; the same one
``python -m scoring score --write-back`` takes), kept alive by a heartbeat and expiring
``LOCK_TTL`` s after a crashed worker stops renewing it, so two write-backs of the same
scoring never overlap (the follow-up waits for it); ``score_job`` itself takes no lock.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable

# the backend enqueues the rescore: one id, one path, one event rule, one set of options
from backend.jobs import (  # noqa: F401  (re-exported: the rescore's contract, documented above)
    RESCORE_JOB,
    RESCORE_RETRY,
    RESCORE_TIMEOUT,
    JobQueue,
    is_ground_truth_event,
    rescore_job_id,
)
from core.errors import ConfigError, ExportError, NoReferenceError, ScoringConfigError
from core.locks import LOCK_TTL, LOCK_WAIT, LockBusy, exclusive  # noqa: F401  (moved to core.locks; re-exported)
from core.queue import enqueue_unique, queue_for
from core.settings import Settings
from core.stores import LOCK_PREFIX

log = logging.getLogger(__name__)

SCORE_JOB = "scoring.jobs.score_job"

SCORE_TIMEOUT = 1800          # s: one scoring run (pull, score, write back)
SCORE_RETRY = (3, [30, 120, 600])
RESULT_TTL = 86400            # s: keep a finished job's summary a day
FAILURE_TTL = 7 * 86400       # s: keep a failed job (and its traceback) a week

# errors a retry will not fix: fail the job at once
FINAL_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ExportError, NoReferenceError, ScoringConfigError)


JobBusy = LockBusy  # an identical scoring run holds the lock for longer than LOCK_WAIT; the job is retried later


# --------------------------------------------------------------------------- ids
def _part(value) -> str:
    """A job-id-safe rendering of ``value`` (rq allows ``[A-Za-z0-9_-]``), collision-free.

    Example::

        >>> _part("v1"), _part("gpt-4o.mini v2")
        ('v1', 'gpt-4o_mini_v2_d714cd')
    """
    text = str(value)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    if safe != text or not safe:
        safe += "_" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return safe


def score_job_id(project_id, version: str, against: str = "ground_truth", write_back: bool = True) -> str:
    """The deterministic job id of a scoring run.

    Example::

        >>> score_job_id(7, "v2", "ground_truth", True)
        'score-7-v2-ground_truth-wb'
    """
    return f"score-{_part(project_id)}-{_part(version)}-{_part(against)}{'-wb' if write_back else ''}"


def lock_key(project_id, version: str, against: str) -> str:
    """The Redis key of the lock that keeps identical scoring runs apart (write-back or not).

        >>> lock_key(7, "v2", "ground_truth")
        'llm-prelabel:lock:7:v2:ground_truth'
    """
    return f"{LOCK_PREFIX}:{_part(project_id)}:{_part(version)}:{_part(against)}"


# --------------------------------------------------------------------------- enqueueing
def _retry(spec):
    from rq import Retry

    return Retry(max=spec[0], interval=list(spec[1]))


@dataclass(frozen=True)
class ScoreRun:
    """One scoring run to enqueue: ``version`` of a project against ``against`` (ground truth or a
    version id), with or without writing agreement back.

        >>> ScoreRun(7, "v2").job_id, ScoreRun(7, "v2", "v1", write_back=False).description
        ('score-7-v2-ground_truth-wb', 'score v2 against v1 in project 7')
    """

    project: str | int
    version: str
    against: str = "ground_truth"
    write_back: bool = True

    @property
    def job_id(self) -> str:
        return score_job_id(self.project, self.version, self.against, self.write_back)

    @property
    def description(self) -> str:
        back = " and write back" if self.write_back else ""
        return f"score {self.version} against {self.against} in project {self.project}{back}"


def enqueue_score(settings: Settings, run: ScoreRun, *, connection=None, description: str | None = None):
    """Enqueue :func:`score_job` for ``run`` under its unique id, folding into a pending identical job
    (``core.queue.enqueue_unique``; a run in progress gets one follow-up).  Returns ``(job, created)``."""
    return enqueue_unique(
        queue_for(settings, connection), SCORE_JOB, job_ids=[run.job_id, f"{run.job_id}-next"],
        args=(str(run.project), run.version), kwargs={"against": run.against, "write_back": bool(run.write_back)},
        job_timeout=SCORE_TIMEOUT, retry=_retry(SCORE_RETRY), result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=description or run.description,
    )


def enqueue_rescore(settings: Settings, project_id, event: dict | None = None, *, connection=None):
    """Debounced rescore after an annotation event; returns the job (new or folded into) or ``None`` if not relevant.

    Relevant events: ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` of a
    ground-truth annotation, and any annotation deletion (the payload carries
    no ground-truth flag).  ``event=None`` means "rescore regardless".  The
    job runs ``settings.rescore_debounce`` seconds later; events until then
    fold into it (see the module docstring for the contract).
    """
    from rq.job import Job

    if event is not None and not is_ground_truth_event(event):
        return None
    queue = queue_for(settings, connection)
    job_queue = JobQueue(settings.replace(queue_name=queue.name), connection=queue.connection)
    return Job.fetch(job_queue.enqueue_rescore(str(project_id)), connection=queue.connection)


# --------------------------------------------------------------------------- exclusion and failure policy
def fail_fast(func: Callable) -> Callable:
    """Decorator for job functions: errors in ``FINAL_ERRORS`` fail the job without using its retries.

    Other exceptions propagate unchanged, so rq retries them per the job's ``Retry``.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FINAL_ERRORS:
            from rq import get_current_job

            job = get_current_job()
            if job is not None and job.retries_left:
                log.info("job %s: not retrying, the error needs a fix, not another try", job.id)
                job.retries_left = 0
            raise

    return wrapper


# --------------------------------------------------------------------------- jobs
@fail_fast
def score_job(project_id, version: str, against: str = "ground_truth", write_back: bool = True, *,
              settings: Settings | None = None) -> dict:
    """RQ job: score ``version`` of a project against ``against`` (and write back); returns a summary.

    ``settings`` is for direct calls; in a worker it is built from the
    environment (``Settings.from_env()``).  With ``write_back``, ``score_project``
    runs under the lock :func:`lock_key` so identical write-backs never overlap.
    """
    settings = settings or Settings.from_env()
    if not (settings.label_studio_url and settings.label_studio_api_key):
        raise ConfigError("scoring jobs need LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the worker's environment")
    from scoring.pipeline import ScoreOptions, score_project

    started = time.monotonic()  # the lock (lock_key) is taken by score_project when it writes back: not here
    options = ScoreOptions(against=against, write_back=write_back, progress=False)
    report = score_project(settings, project_id, version, options)
    summary = {
        "project": str(project_id), "version": version, "reference": report.get("reference", against),
        "score": report.get("score"), "n_tasks": report.get("n_tasks"),
        "n_compared": report.get("n_compared"), "n_skipped": report.get("n_skipped"),
        "run_id": report.get("run_id"), "write_back": bool(write_back),
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info("scored project %s version %s against %s: %s", project_id, version, against, summary["score"])
    return summary


def versions_to_rescore(settings: Settings, project_id) -> list[str]:
    """Versions to rescore after a ground-truth change: those scored against ground truth before, newest first,
    then the version the ML backend serves for the project (if set up)."""
    from backend.projects import open_project_versions
    from scoring.history import GROUND_TRUTH, open_history

    seen: list[str] = []
    for run in open_history(settings).list(project_id, limit=500):
        if run.get("reference") == GROUND_TRUTH and run.get("version") not in seen:
            seen.append(run["version"])
    try:
        served = open_project_versions(settings).get(str(project_id))
    except Exception as exc:  # the map is optional here; its absence must not stop a rescore
        log.warning("could not read the project's configured version: %s", exc)
        served = None
    if served and served not in seen:
        seen.append(served)
    return seen


@fail_fast
def rescore_on_annotation(project_id, *, settings: Settings | None = None,
                          versions: Iterable[str] | None = None) -> dict:
    """RQ job (trampoline): enqueue a ground-truth rescore with write-back of each version of the project.

    Versions: ``versions`` if given, else :func:`versions_to_rescore`.  Returns
    ``{"project", "versions", "jobs": [{"version", "job_id", "created"}]}``.
    """
    settings = settings or Settings.from_env()
    chosen = list(versions) if versions is not None else versions_to_rescore(settings, project_id)
    if not chosen:
        log.info("project %s: no version has been scored against ground truth yet; nothing to rescore", project_id)
    jobs = []
    for version in chosen:
        job, created = enqueue_score(
            settings, ScoreRun(project_id, version),
            description=f"rescore {version} in project {project_id} after ground truth changed")
        jobs.append({"version": version, "job_id": job.id, "created": created})
    return {"project": str(project_id), "versions": chosen, "jobs": jobs}


@fail_fast
def scheduled_score(project_id, version: str, against: str = "ground_truth", write_back: bool = True, *,
                    settings: Settings | None = None) -> dict:
    """RQ job the cron schedule enqueues: enqueue :func:`score_job` unless an identical one is already pending."""
    settings = settings or Settings.from_env()
    job, created = enqueue_score(settings, ScoreRun(project_id, version, against, write_back),
                                 description=f"scheduled: score {version} against {against} in project {project_id}")
    return {"project": str(project_id), "version": version, "against": against, "job_id": job.id, "created": created}
