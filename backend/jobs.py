"""Queue hand-off from the ML backend to the worker (RQ on Redis).

The backend only *enqueues*, by dotted path, and never imports ``scoring``:

``backend.jobs.prelabel_tasks(project_id, task_ids, version_id)``
    enqueued on ``TASKS_CREATED``: pre-labels freshly imported tasks and
    writes the predictions into Label Studio through ``core.labelstudio``
    (retries, secret masking; needs ``LABEL_STUDIO_URL`` and
    ``LABEL_STUDIO_API_KEY`` in the worker).
``scoring.jobs.rescore_on_annotation(project_id)``
    enqueued on ``ANNOTATION_CREATED/UPDATED/DELETED`` of a ground-truth
    annotation, debounced: one job id per project (``rescore:<project>``),
    scheduled ``RESCORE_DEBOUNCE`` seconds ahead; events arriving while it
    waits or runs are folded into it (``core.queue.enqueue_unique``).

Both run in ``python -m scoring worker``.

Redis down (``core.spool``): an event that cannot be enqueued is kept in the local spool
(``SPOOL_DIR``: the project, the task ids, the version) and enqueued when Redis is back
(rescores fold into the pending job, replayed pre-label chunks get deterministic job ids,
so replaying twice queues nothing twice).  :meth:`JobQueue.submit` says which happened.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from core import spool
from core.queue import enqueue_unique
from core.settings import Settings

log = logging.getLogger(__name__)

PRELABEL_JOB = "backend.jobs.prelabel_tasks"
RESCORE_JOB = "scoring.jobs.rescore_on_annotation"
PRELABEL_CHUNK = 100  # tasks per prelabel job
RESCORE_TIMEOUT = 120             # s: the rescore job only enqueues scoring runs
RESCORE_RETRY = (3, [10, 60, 300])  # retries, and the seconds before each


def prelabel_timeout(n_tasks: int) -> int:
    """RQ timeout of a prelabel job of ``n_tasks`` tasks: 10 s a task, at least 10 minutes."""
    return max(600, 10 * n_tasks)


def rescore_job_id(project_id: str) -> str:
    return f"rescore-{project_id}"


def is_ground_truth_event(event: dict) -> bool:
    """Whether a Label Studio webhook event may change a project's ground truth.

    Annotation deletions always may (their payloads carry ids only)::

        >>> is_ground_truth_event({"action": "ANNOTATION_UPDATED", "annotation": {"ground_truth": True}})
        True
        >>> is_ground_truth_event({"action": "ANNOTATION_CREATED", "annotation": {"ground_truth": False}})
        False
        >>> is_ground_truth_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 3}]})
        True
    """
    action = str(event.get("action") or "")
    if action in {"ANNOTATIONS_DELETED", "ANNOTATION_DELETED"}:
        return True
    if action not in {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_UPDATED"}:
        return False
    ann = event.get("annotation")
    anns = event.get("annotations") or ([ann] if isinstance(ann, dict) else [])
    return any(isinstance(a, dict) and a.get("ground_truth") for a in anns)


def event_work(action: str, project_id: str | None, event: dict, version_id: str) -> dict | None:
    """The work a webhook event asks for, as a small JSON-able dict (``None``: nothing to do).

    >>> event_work("TASKS_CREATED", "7", {"tasks": [{"id": 1}, {"id": 2}]}, "v1")
    {'job': 'prelabel', 'project': '7', 'tasks': [1, 2], 'version': 'v1'}
    >>> event_work("ANNOTATION_CREATED", "7", {"annotation": {"ground_truth": True}}, "v1")
    {'job': 'rescore', 'project': '7'}
    """
    if not project_id:
        return None
    if action == "TASKS_CREATED":
        ids = [t["id"] for t in event.get("tasks") or [] if isinstance(t, dict) and "id" in t]
        return {"job": "prelabel", "project": project_id, "tasks": ids, "version": version_id} if ids else None
    if is_ground_truth_event(dict(event, action=action)):
        return {"job": "rescore", "project": project_id}
    return None


@dataclass
class Submitted:
    """What became of an event: the job id(s) enqueued, or where it waits for Redis."""

    job_id: str | None = None
    spooled: str | None = None     # a message naming the spool, when Redis was down


class JobQueue:
    """Enqueues the backend's background work.  Needs ``REDIS_URL``.

    Without ``connection`` it uses the process's ``core.spool.RedisLink`` and spools the
    events it cannot enqueue while Redis is down; with one (inside the worker) Redis errors
    are raised.
    """

    mode = "queue"

    def __init__(self, settings: Settings, connection=None):
        from rq import Queue

        self.settings = settings
        self.link: spool.RedisLink | None = None
        if connection is None:
            self.link = spool.redis_link(settings)
            connection = self.link.connection
        self.connection = connection
        self.queue = Queue(settings.queue_name, connection=self.connection)

    def handle_event(self, action: str, project_id: str | None, event: dict, version_id: str) -> str | None:
        """The id(s) of the job(s) an event enqueued (``None``: nothing to do, or kept for later)."""
        return self.submit(action, project_id, event, version_id).job_id

    def submit(self, action: str, project_id: str | None, event: dict, version_id: str) -> Submitted:
        """Enqueue what the event asks for; while Redis is down, keep it in the spool."""
        work = event_work(action, project_id, event, version_id)
        if work is None:
            return Submitted()
        if self.link is None:
            return Submitted(self.run(work))
        try:
            return Submitted(self.link.call(self.run, work))
        except spool.REDIS_DOWN:
            key = uuid.uuid4().hex
            self.link.keep(KIND, [(key, dict(work, queue=self.queue.name, key=key))])
            return Submitted(spooled=f"Redis is unreachable ({self.link.error}); the {action} event is kept in "
                                     f"{self.link.spool.path} and queued when Redis is back")

    def run(self, work: dict, key: str | None = None) -> str:
        """Enqueue one :func:`event_work`; ``key`` (a replayed event) makes pre-label job ids deterministic."""
        if work["job"] == "prelabel":
            return self.enqueue_prelabel(work["project"], work["tasks"], work["version"], key=key)
        return self.enqueue_rescore(work["project"])

    def enqueue_prelabel(self, project_id: str, task_ids: list[int], version_id: str, key: str | None = None) -> str:
        """One :func:`prelabel_tasks` job per ``PRELABEL_CHUNK`` tasks; returns their ids, comma-separated.

        With ``key`` the chunks get the ids ``prelabel-<key>-<n>``, enqueued once (a pending
        one takes a repeat; a finished one is replaced, and skips the tasks it pre-labelled).
        """
        jobs = []
        for n, i in enumerate(range(0, len(task_ids), PRELABEL_CHUNK)):
            chunk = task_ids[i : i + PRELABEL_CHUNK]
            options: dict[str, Any] = dict(job_timeout=prelabel_timeout(len(chunk)), result_ttl=3600,
                                           description=f"pre-label {len(chunk)} tasks of project {project_id}")
            if key is None:
                job = self.queue.enqueue(PRELABEL_JOB, project_id, chunk, version_id, **options)
            else:
                job, _ = enqueue_unique(self.queue, PRELABEL_JOB, job_ids=[f"prelabel-{key}-{n}"],
                                        args=(project_id, chunk, version_id), **options)
            jobs.append(job.id)
        return ",".join(jobs)

    def enqueue_chunks(self, chunks: list) -> None:
        """Enqueue a run's chunk jobs (``backend.runwork.run_chunk``, deterministic ids, retried)."""
        from backend.runwork import enqueue_rq

        enqueue_rq(self.queue, chunks)

    def start_run(self, project: int, version: str, task_ids: list, source: str) -> str:
        """Record a run of ``task_ids`` (e.g. a ``/predict`` overflow) and enqueue its chunks; returns its id."""
        from backend.runstore import RedisRunStore
        from backend.runwork import new_run_id, split, start_run

        store = RedisRunStore(self.connection, self.queue.name)
        chunks = split(new_run_id(), project, version, task_ids)
        return start_run(store, self, chunks, {"project": project, "version": version, "source": source,
                                               "selected": len(task_ids)})

    def enqueue_rescore(self, project_id: str) -> str:
        """Schedule one rescore per project, ``rescore_debounce`` s ahead; fold repeats into it.

        A job with the project's id that is scheduled, queued or running takes the event
        (the rescore job only enqueues scoring runs that pull fresh data); a finished or
        failed one is replaced (``core.queue.enqueue_unique`` with one id).
        """
        from rq import Retry

        job, _created = enqueue_unique(
            self.queue, RESCORE_JOB, job_ids=[rescore_job_id(project_id)], args=(project_id,),
            delay=self.settings.rescore_debounce, job_timeout=RESCORE_TIMEOUT,
            retry=Retry(max=RESCORE_RETRY[0], interval=RESCORE_RETRY[1]), result_ttl=86400,
            description=f"rescore project {project_id} after annotation changes",
        )
        return job.id


KIND = "event"   # spool entries: key = a new id, payload = event_work(...) plus "queue" and "key"


def _replay_events(connection, settings: Settings, payloads: list[dict]) -> None:
    """Spool replay: enqueue the events kept while Redis was down (idempotent, see the module docstring)."""
    for work in payloads:
        JobQueue(settings.replace(queue_name=work["queue"]), connection=connection).run(work, key=work["key"])


spool.KINDS[KIND] = spool.Kind("webhook event(s)", _replay_events)


def prelabel_tasks(project_id: str, task_ids: list[int], version_id: str) -> dict:
    """RQ job: pre-label imported tasks and write the predictions to Label Studio.

    Tasks that already have a prediction of ``version_id`` are left alone; tasks
    that fail get no prediction (see ``backend.predictor``).  Every Label Studio
    call goes through ``core.labelstudio.LabelStudioClient`` (retried, secrets
    masked in its errors).  Returns counts.
    """
    from backend.ledger import open_ledger
    from backend.predictor import Predictor
    from backend.runstore import open_run_store
    from backend.runwork import write_fresh
    from backend.versions import load_versions
    from core.labelstudio import LabelStudioClient

    settings = Settings.from_env()
    client = LabelStudioClient(settings)  # ConfigError without LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY
    versions = load_versions(settings.prompts_file, settings.default_version)
    label_config = client.label_config(int(project_id))
    listed = client.tasks_by_ids(int(project_id), task_ids)
    tasks = [{"id": t["id"], "data": t["data"]} for t in listed
             if not any(p.get("model_version") == version_id for p in t["predictions"])]
    # No Label Studio request is waiting here: the deadline is the job's own timeout (less a
    # minute to write the predictions), not PREDICT_DEADLINE, which exists for /predict.
    job_settings = settings.replace(predict_deadline=float(prelabel_timeout(len(task_ids)) - 60))
    predictor = Predictor(job_settings, versions, ledger=open_ledger(settings))
    outcomes = predictor.predict(tasks, label_config, version_id, project=str(project_id)) if tasks else []
    preds = [dict(p, task=o.task_id) for o in outcomes if (p := predictor.prediction(o, version_id))]
    written, taken = write_fresh(client, open_run_store(settings), int(project_id), version_id, preds)
    summary = {"tasks": len(task_ids), "predicted": written, "skipped_existing": len(task_ids) - len(tasks) + taken,
               "failed": len(outcomes) - len(preds)}
    log.info("prelabel project %s: %s", project_id, summary)
    return summary
