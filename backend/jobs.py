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
"""
from __future__ import annotations

import logging

from core.queue import enqueue_unique
from core.settings import Settings
from core.stores import redis_connection

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


class JobQueue:
    """Enqueues the backend's background work.  Needs ``REDIS_URL``."""

    def __init__(self, settings: Settings, connection=None):
        from rq import Queue

        self.settings = settings
        self.connection = connection or redis_connection(settings, "the job queue")
        self.queue = Queue(settings.queue_name, connection=self.connection)

    def handle_event(self, action: str, project_id: str | None, event: dict, version_id: str) -> str | None:
        if not project_id:
            return None
        if action == "TASKS_CREATED":
            ids = [t["id"] for t in event.get("tasks") or [] if isinstance(t, dict) and "id" in t]
            return self.enqueue_prelabel(project_id, ids, version_id) if ids else None
        if is_ground_truth_event(dict(event, action=action)):
            return self.enqueue_rescore(project_id)
        return None

    def enqueue_prelabel(self, project_id: str, task_ids: list[int], version_id: str) -> str:
        """One :func:`prelabel_tasks` job per ``PRELABEL_CHUNK`` tasks; returns their ids, comma-separated."""
        jobs = []
        for i in range(0, len(task_ids), PRELABEL_CHUNK):
            chunk = task_ids[i : i + PRELABEL_CHUNK]
            job = self.queue.enqueue(
                PRELABEL_JOB, project_id, chunk, version_id, job_timeout=prelabel_timeout(len(chunk)),
                result_ttl=3600, description=f"pre-label {len(chunk)} tasks of project {project_id}",
            )
            jobs.append(job.id)
        return ",".join(jobs)

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


def prelabel_tasks(project_id: str, task_ids: list[int], version_id: str) -> dict:
    """RQ job: pre-label imported tasks and write the predictions to Label Studio.

    Tasks that already have a prediction of ``version_id`` are left alone; tasks
    that fail get no prediction (see ``backend.predictor``).  Every Label Studio
    call goes through ``core.labelstudio.LabelStudioClient`` (retried, secrets
    masked in its errors).  Returns counts.
    """
    from backend.ledger import open_ledger
    from backend.predictor import Predictor
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
    if preds:
        client.import_predictions(int(project_id), preds)
    summary = {"tasks": len(task_ids), "predicted": len(preds), "skipped_existing": len(task_ids) - len(tasks),
               "failed": len(outcomes) - len(preds)}
    log.info("prelabel project %s: %s", project_id, summary)
    return summary
