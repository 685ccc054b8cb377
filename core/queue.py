"""Enqueueing with folding: one pending job per piece of work (RQ on Redis).

Both sides enqueue work that must not pile up: the ML backend's debounced rescore
after a ground-truth change (``backend.jobs``) and the scoring runs
(``scoring.jobs``).  They give the work a deterministic job id and call
:func:`enqueue_unique`, which, for each id of ``job_ids`` in order:

* **no job** with that id → enqueue one there (rq's ``unique=True``: a concurrent
  enqueuer that loses the race gets ``DuplicateJobError`` and starts over, so two
  racing requests create one job);
* **pending** (scheduled, queued, deferred...) → fold into it: nothing is enqueued,
  the job has not read any data yet and will see the newest;
* **finished, failed, stopped or canceled** → delete it (atomically: only if its
  status is still that) and enqueue a new one under the id;
* **running** (started) → try the next id.  When every id is running, the last one
  takes the request.

So ``job_ids=[id]`` means "a running job takes the event too" (the rescore
trampoline only enqueues runs that pull fresh data), and ``job_ids=[id,
f"{id}-next"]`` means "a run in progress gets one follow-up" (a scoring run that
has already read Label Studio).

Defaults: a few rounds (:data:`ROUNDS`) of racing with other enqueuers, then
:class:`core.errors.Error`; ``delay`` seconds > 0 schedules the job (``enqueue_in``;
it needs a worker running RQ's scheduler, which ``python -m scoring worker`` does).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

from core.errors import Error
from core.settings import Settings
from core.stores import redis_connection

RUNNING = frozenset({"started"})
FINISHED = frozenset({"finished", "failed", "stopped", "canceled"})   # any other status is pending
ROUNDS = 5   # rounds of racing with other enqueuers before giving up


def job_status(connection, job_id: str) -> str | None:
    """The stored status of a job (``None`` when no job has that id)."""
    from rq.job import Job

    raw = connection.hget(Job.key_for(job_id), "status")
    return raw.decode() if isinstance(raw, bytes) else raw


def free_if_finished(queue, job_id: str) -> bool:
    """Delete the job ``job_id`` if it has finished (or failed, stopped...), so the id can be reused.

    Atomic with respect to its status (``WATCH``): a job that another process
    re-enqueued meanwhile is left alone.  Returns True when the id is free afterwards.
    """
    from redis.exceptions import WatchError
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    key = Job.key_for(job_id)
    with queue.connection.pipeline() as pipe:
        try:
            pipe.watch(key)
            status = job_status(pipe, job_id)
            if status is None or status not in FINISHED:
                pipe.unwatch()
                return status is None
            job = Job.fetch(job_id, connection=queue.connection)
            pipe.multi()
            job.delete(pipeline=pipe)   # its hash, result and registry entries
            pipe.execute()
            return True
        except (WatchError, NoSuchJobError):
            return False


def enqueue_unique(queue, func: str | Callable, *, job_ids: list[str], args: tuple = (), kwargs: dict | None = None,
                   delay: float | None = None, **options):
    """Enqueue ``func(*args, **kwargs)`` under the first free id of ``job_ids``, or fold into a pending job.

    The rules are in the module docstring.  ``options`` go to rq (``job_timeout``,
    ``retry``, ``result_ttl``, ``failure_ttl``, ``description``...).  Returns
    ``(job, created)``.
    """
    from rq.exceptions import DuplicateJobError, NoSuchJobError
    from rq.job import Job

    def create(job_id: str):
        common = dict(args=args, kwargs=kwargs or {}, job_id=job_id, unique=True, **options)
        if delay and delay > 0:
            return queue.enqueue_in(timedelta(seconds=delay), func, **common)
        return queue.enqueue(func, **common)

    for _round in range(ROUNDS):
        target = _first_slot(queue, job_ids)
        if target is None:
            continue  # a job changed under us: start over
        job_id, free = target
        try:
            if free:
                return create(job_id), True
            return Job.fetch(job_id, connection=queue.connection), False
        except (DuplicateJobError, NoSuchJobError):
            continue  # created or deleted by someone else just now: start over
    raise Error(f"could not enqueue {func} under {job_ids[0]}: its jobs kept changing; try again")


def _first_slot(queue, job_ids: list[str]) -> tuple[str, bool] | None:
    """``(job id, free)``: the first id that is free or pending, else the last (running) one;
    ``None`` when a finished job could not be cleared (it changed meanwhile)."""
    for job_id in job_ids:
        status = job_status(queue.connection, job_id)
        if status in RUNNING:
            continue
        if status is None or status in FINISHED:
            return (job_id, True) if free_if_finished(queue, job_id) else None
        return job_id, False
    return job_ids[-1], False


# --------------------------------------------------------------------------- connection and queue
def current_connection(settings: Settings, what: str = "the job queue", *, required: bool = True):
    """Redis for queue work: the current job's connection inside an RQ job, else ``REDIS_URL``.

    Without ``REDIS_URL``: ``ConfigError`` naming ``what``, or ``None`` when not ``required``.
    """
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        return job.connection
    if not settings.redis_url and not required:
        return None
    return redis_connection(settings, what)


def queue_for(settings: Settings, connection=None):
    """The queue to enqueue on: inside a job, the queue that job came from; else ``RQ_QUEUE``
    (``settings.queue_name``) on ``connection`` (default :func:`current_connection`)."""
    from rq import Queue, get_current_job

    job = get_current_job()
    if job is not None and connection is None:
        return Queue(job.origin, connection=job.connection)
    return Queue(settings.queue_name, connection=connection or current_connection(settings))
