"""Queue hand-off from the ML backend to the worker (RQ on Redis).

The backend only *enqueues*, by dotted path, and never imports ``scoring``:

``backend.jobs.prelabel_tasks(project_id, task_ids, version_id)``
    enqueued on ``TASKS_CREATED``: pre-labels freshly imported tasks and
    writes the predictions into Label Studio with the SDK
    (needs ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` in the worker).
``scoring.jobs.rescore_on_annotation(project_id)``
    enqueued on ``ANNOTATION_CREATED/UPDATED/DELETED`` of a ground-truth
    annotation, debounced: one job id per project (``rescore:<project>``),
    scheduled ``RESCORE_DEBOUNCE`` seconds ahead; events arriving while it
    waits or runs are folded into it (the contract in ``scoring/jobs.py``).

Both run in ``python -m scoring worker``.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

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


class JobQueue:
    """Enqueues the backend's background work.  Needs ``REDIS_URL``."""

    def __init__(self, settings: Settings, connection=None):
        from redis import Redis
        from rq import Queue

        self.settings = settings
        self.connection = connection or Redis.from_url(settings.redis_url)
        self.queue = Queue(settings.queue_name, connection=self.connection)

    def handle_event(self, action: str, project_id: str | None, event: dict, version_id: str) -> str | None:
        if not project_id:
            return None
        if action == "TASKS_CREATED":
            ids = [t["id"] for t in event.get("tasks") or [] if isinstance(t, dict) and "id" in t]
            if not ids:
                return None
            jobs = []
            for i in range(0, len(ids), PRELABEL_CHUNK):
                chunk = ids[i : i + PRELABEL_CHUNK]
                job = self.queue.enqueue(
                    PRELABEL_JOB, project_id, chunk, version_id,
                    job_timeout=prelabel_timeout(len(chunk)), result_ttl=3600, description=f"pre-label {len(chunk)} tasks of project {project_id}",
                )
                jobs.append(job.id)
            return ",".join(jobs)
        if is_ground_truth_event(dict(event, action=action)):
            return self.enqueue_rescore(project_id)
        return None

    def enqueue_rescore(self, project_id: str) -> str:
        """Schedule one rescore per project, ``rescore_debounce`` s ahead; fold repeats into it.

        A job with the project's id that is scheduled, queued or running takes the event
        (the rescore job only enqueues scoring runs that pull fresh data); a finished or
        failed one is replaced.  ``unique=True`` makes two racing webhooks create one job.
        """
        from rq import Retry
        from rq.exceptions import DuplicateJobError, NoSuchJobError
        from rq.job import Job, JobStatus

        job_id = rescore_job_id(project_id)
        pending = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED)
        for _ in range(5):  # a few rounds of racing with other enqueuers at most
            try:
                existing = Job.fetch(job_id, connection=self.connection)
                if existing.get_status(refresh=True) in pending:
                    return job_id
                existing.delete()
            except NoSuchJobError:
                pass
            try:
                self.queue.enqueue_in(
                    timedelta(seconds=self.settings.rescore_debounce), RESCORE_JOB, project_id,
                    job_id=job_id, unique=True, job_timeout=RESCORE_TIMEOUT,
                    retry=Retry(max=RESCORE_RETRY[0], interval=RESCORE_RETRY[1]), result_ttl=86400,
                    description=f"rescore project {project_id} after annotation changes",
                )
                return job_id
            except DuplicateJobError:
                continue  # another webhook created it just now: fold into it
        return job_id


def prelabel_tasks(project_id: str, task_ids: list[int], version_id: str) -> dict:
    """RQ job: pre-label imported tasks and write the predictions to Label Studio.

    Tasks that already have a prediction of ``version_id`` are left alone; tasks
    that fail get no prediction (see ``backend.predictor``).  Returns counts.
    """
    from label_studio_sdk import LabelStudio

    from core.errors import ConfigError
    from backend.ledger import open_ledger
    from backend.predictor import Predictor
    from backend.versions import load_versions

    settings = Settings.from_env()
    if not (settings.label_studio_url and settings.label_studio_api_key):
        raise ConfigError("pre-labelling on import needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the worker's environment")
    versions = load_versions(settings.prompts_file, settings.default_version)
    ls = LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key)
    project = ls.projects.get(int(project_id))
    # One listing of just these tasks.  Not tasks.get(): opening a task through the API
    # makes Label Studio call /predict for it, which would pre-label it a second way.
    query = json.dumps({"selectedItems": {"all": False, "included": list(task_ids)}})
    tasks = []
    for task in ls.tasks.list(project=int(project_id), fields="all", query=query, page_size=max(1, len(task_ids))):
        preds = getattr(task, "predictions", None) or []
        if any((p.get("model_version") if isinstance(p, dict) else getattr(p, "model_version", None)) == version_id for p in preds):
            continue
        tasks.append({"id": task.id, "data": task.data})
    # No Label Studio request is waiting here: the deadline is the job's own timeout (less a
    # minute to write the predictions), not PREDICT_DEADLINE, which exists for /predict.
    job_settings = settings.replace(predict_deadline=float(prelabel_timeout(len(task_ids)) - 60))
    predictor = Predictor(job_settings, versions, ledger=open_ledger(settings))
    outcomes = predictor.predict(tasks, project.label_config, version_id, project=str(project_id)) if tasks else []
    preds = [dict(p, task=o.task_id) for o in outcomes if (p := predictor.prediction(o, version_id))]
    if preds:
        ls.projects.import_predictions(id=int(project_id), request=preds)
    summary = {"tasks": len(task_ids), "predicted": len(preds), "skipped_existing": len(task_ids) - len(tasks), "failed": len(outcomes) - len(preds)}
    log.info("prelabel project %s: %s", project_id, summary)
    return summary
