"""RQ jobs of the scoring worker, and how to enqueue them so that duplicates fold together.

Run them with ``python -m scoring worker`` (it also runs RQ's scheduler, which
moves delayed and retried jobs onto the queue when they are due).

Jobs, by dotted path (what an enqueuer that cannot import ``scoring`` uses)
---------------------------------------------------------------------------
``scoring.jobs.score_job(project_id, version, against="ground_truth", write_back=True)``
    Pulls the project from Label Studio, scores ``version`` against ground
    truth or another version, records the run in the history and (with
    ``write_back``) writes per-task agreement back.  Returns a small summary
    dict.  Enqueue it with :func:`enqueue_score`: job id
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
slot, ``<id>-next``.  Inside ``score_job`` a Redis lock per (project, version,
reference), kept alive by a heartbeat and expiring ``LOCK_TTL`` s after a
crashed worker stops renewing it, makes sure two runs of the same scoring
never overlap (the follow-up waits for it).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterable

from core.errors import ConfigError
# the backend enqueues the rescore: one id, one path, one event rule, one set of options
from backend.jobs import RESCORE_JOB, RESCORE_RETRY, RESCORE_TIMEOUT, JobQueue, is_ground_truth_event, rescore_job_id  # noqa: F401
from core.settings import Settings
from core.errors import ExportError, NoReferenceError, ScoringConfigError, ScoringError

log = logging.getLogger(__name__)

SCORE_JOB = "scoring.jobs.score_job"

SCORE_TIMEOUT = 1800          # s: one scoring run (pull, score, write back)
SCORE_RETRY = (3, [30, 120, 600])
RESULT_TTL = 86400            # s: keep a finished job's summary a day
FAILURE_TTL = 7 * 86400       # s: keep a failed job (and its traceback) a week
LOCK_TTL = 60                 # s: a lock lives this long after its holder stops renewing it
LOCK_WAIT = 600               # s: how long a run waits for an identical one to finish before giving up (then retried)

RUNNING = {"started"}
FINISHED = {"finished", "failed", "stopped", "canceled"}   # any other status is pending (queued, scheduled, deferred...)

# errors a retry will not fix: fail the job at once
FINAL_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ExportError, NoReferenceError, ScoringConfigError)


class JobBusy(ScoringError):
    """An identical scoring run holds the lock for longer than we wait; the job is retried later."""

    reason = "busy"


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
    """The Redis key of the lock that keeps identical scoring runs apart (write-back or not)."""
    return f"scoring:lock:{_part(project_id)}:{_part(version)}:{_part(against)}"


# --------------------------------------------------------------------------- enqueueing
def job_status(connection, job_id: str) -> str | None:
    """The stored status of a job (``None`` when no job has that id)."""
    from rq.job import Job

    raw = connection.hget(Job.key_for(job_id), "status")
    return raw.decode() if isinstance(raw, bytes) else raw


def _clear_finished(queue, job_id: str) -> bool:
    """Delete a finished/failed/stopped job with this id so the id can be reused; atomic with respect to status.

    Returns True when the id is free afterwards.
    """
    from redis.exceptions import WatchError
    from rq.job import Job
    from rq.results import Result

    key = Job.key_for(job_id)
    with queue.connection.pipeline() as pipe:
        try:
            pipe.watch(key)
            raw = pipe.hget(key, "status")
            status = raw.decode() if isinstance(raw, bytes) else raw
            if status is None:
                pipe.unwatch()
                return True
            if status not in FINISHED:
                pipe.unwatch()
                return False
            pipe.multi()
            pipe.delete(key, f"{key}:dependents", f"{key}:dependencies", Result.get_key(job_id))
            for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.canceled_job_registry):
                pipe.zrem(registry.key, job_id)
            pipe.execute()
            return True
        except WatchError:
            return False


def enqueue_unique(queue, func, *, job_ids: list[str], args: tuple = (), kwargs: dict | None = None,
                   delay: float | None = None, **options):
    """Enqueue ``func`` under the first free id of ``job_ids``, or fold into a pending job.

    For each id in order: no job → enqueue it there (``unique=True``, so a
    concurrent enqueuer cannot create a second one); a pending job (scheduled,
    queued, deferred) → return it, nothing new is enqueued; a finished/failed
    job → delete it and reuse the id; a running job → try the next id.  When
    every id is running, the last one is returned (it is waiting for the lock,
    so it has not read any data yet).  ``options`` go to rq (``job_timeout``,
    ``retry``, ``result_ttl``...).  Returns ``(job, created)``.
    """
    from rq.exceptions import DuplicateJobError, NoSuchJobError
    from rq.job import Job

    kwargs = kwargs or {}

    def create(job_id):
        if delay and delay > 0:
            return queue.enqueue_in(timedelta(seconds=delay), func, args=args, kwargs=kwargs, job_id=job_id, unique=True, **options)
        return queue.enqueue(func, args=args, kwargs=kwargs, job_id=job_id, unique=True, **options)

    for _round in range(5):  # a few rounds of racing with other enqueuers at most
        for job_id in job_ids:
            status = job_status(queue.connection, job_id)
            if status in RUNNING:
                continue  # running on data read before this request: try the follow-up id
            if status in FINISHED and not _clear_finished(queue, job_id):
                break  # changed under us: start over
            if status is None or status in FINISHED:
                try:
                    return create(job_id), True
                except DuplicateJobError:
                    break  # someone else created it just now: start over
            try:
                return Job.fetch(job_id, connection=queue.connection), False  # pending: fold into it
            except NoSuchJobError:
                break
        else:
            try:  # every id is running: the last one waits for the lock and has read nothing yet
                return Job.fetch(job_ids[-1], connection=queue.connection), False
            except NoSuchJobError:
                continue
    raise ScoringError(f"could not enqueue {func} under {job_ids[0]}: its jobs kept changing; try again")


def _queue(settings: Settings, connection=None):
    """The queue to enqueue on: inside a job, the queue that job came from; else ``settings.queue_name``."""
    from rq import Queue, get_current_job

    job = get_current_job()
    if job is not None and connection is None:
        return Queue(job.origin, connection=job.connection)
    return Queue(settings.queue_name, connection=connection or _connection(settings))


def _connection(settings: Settings, *, required: bool = True):
    """Redis: the current job's connection inside a job, else ``REDIS_URL``; without it ``ConfigError``,
    or ``None`` when not ``required``."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        return job.connection
    if not settings.redis_url:
        if not required:
            return None
        raise ConfigError("scoring jobs need a queue: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    from redis import Redis

    return Redis.from_url(settings.redis_url)


def _retry(spec):
    from rq import Retry

    return Retry(max=spec[0], interval=list(spec[1]))


def enqueue_score(settings: Settings, project_id, version: str, against: str = "ground_truth", write_back: bool = True,
                  *, delay: float | None = None, connection=None, description: str | None = None):
    """Enqueue :func:`score_job` with its unique id (folding into a pending identical job); returns ``(job, created)``."""
    base = score_job_id(project_id, version, against, write_back)
    return enqueue_unique(
        _queue(settings, connection), SCORE_JOB, job_ids=[base, f"{base}-next"],
        args=(str(project_id), version), kwargs={"against": against, "write_back": bool(write_back)},
        delay=delay, job_timeout=SCORE_TIMEOUT, retry=_retry(SCORE_RETRY), result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        description=description or f"score {version} against {against} in project {project_id}" + (" and write back" if write_back else ""),
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
    queue = _queue(settings, connection)
    job_queue = JobQueue(settings.replace(queue_name=queue.name), connection=queue.connection)
    return Job.fetch(job_queue.enqueue_rescore(str(project_id)), connection=queue.connection)


# --------------------------------------------------------------------------- exclusion and failure policy
@contextmanager
def exclusive(connection, key: str, *, ttl: float = LOCK_TTL, wait: float = LOCK_WAIT):
    """Hold the Redis lock ``key`` for the block; renewed every ``ttl/3`` s so it outlives slow work but not a dead process.

    Waits up to ``wait`` seconds for a current holder, then raises
    :class:`JobBusy`.  With ``connection=None`` (no Redis) the block runs
    unguarded.
    """
    if connection is None:
        yield
        return
    lock = connection.lock(key, timeout=ttl, blocking=True, blocking_timeout=wait, thread_local=False)
    if not lock.acquire(token=uuid.uuid4().hex.encode()):
        raise JobBusy(f"an identical scoring run ({key}) has been running for over {wait:.0f} s; this job will be retried")
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()
            except Exception:  # lost the lock (expired): nothing sensible to do but stop renewing
                log.warning("lost the lock %s while running", key)
                return

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat {key}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=5)
        try:
            lock.release()
        except Exception:
            pass  # expired or taken over: it is not ours to release any more


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
def score_job(project_id, version: str, against: str = "ground_truth", write_back: bool = True, *, settings: Settings | None = None) -> dict:
    """RQ job: score ``version`` of a project against ``against`` (and write back); returns a summary.

    ``settings`` is for direct calls; in a worker it is built from the
    environment (``Settings.from_env()``).  Runs under :func:`exclusive` so
    identical runs never overlap.
    """
    settings = settings or Settings.from_env()
    if not (settings.label_studio_url and settings.label_studio_api_key):
        raise ConfigError("scoring jobs need LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the worker's environment")
    from scoring.pipeline import ScoreOptions, score_project

    connection = _connection(settings, required=False)  # no Redis: the run is unguarded
    with exclusive(connection, lock_key(project_id, version, against)):
        started = time.monotonic()
        options = ScoreOptions(against=against, write_back=write_back, progress=False)
        report = score_project(settings, project_id, version, options)
    summary = {
        "project": str(project_id), "version": version, "reference": report.get("reference", against),
        "score": report.get("score"), "n_tasks": report.get("n_tasks"),
        "n_compared": report.get("n_compared"), "n_skipped": report.get("n_skipped"),
        "run_id": report.get("run_id"), "write_back": bool(write_back), "seconds": round(time.monotonic() - started, 3),
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
def rescore_on_annotation(project_id, *, settings: Settings | None = None, versions: Iterable[str] | None = None) -> dict:
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
        job, created = enqueue_score(settings, project_id, version, "ground_truth", True,
                                     description=f"rescore {version} in project {project_id} after ground truth changed")
        jobs.append({"version": version, "job_id": job.id, "created": created})
    return {"project": str(project_id), "versions": chosen, "jobs": jobs}


@fail_fast
def scheduled_score(project_id, version: str, against: str = "ground_truth", write_back: bool = True, *,
                    settings: Settings | None = None) -> dict:
    """RQ job the cron schedule enqueues: enqueue :func:`score_job` unless an identical one is already pending."""
    settings = settings or Settings.from_env()
    job, created = enqueue_score(settings, project_id, version, against, write_back,
                                 description=f"scheduled: score {version} against {against} in project {project_id}")
    return {"project": str(project_id), "version": version, "against": against, "job_id": job.id, "created": created}
