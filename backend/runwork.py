"""Chunk jobs: predict a chunk of a run's tasks and write the predictions into Label Studio.

A run's task ids are cut into chunks of ``RUN_CHUNK``; each chunk is one job, enqueued by dotted
path (:data:`CHUNK_JOB`) on the RQ queue with the deterministic id ``<run id>-<n>`` (any number
of ``python -m scoring worker`` processes on any number of machines share a run), or run by the
backend's embedded queue (:mod:`backend.embedded`) without Redis.  A chunk job:

1. lists its tasks in Label Studio and drops those that already have a prediction of the version
   (a chunk that runs again -- a retry after its worker was killed -- redoes nothing);
2. predicts the rest through :class:`backend.predictor.Predictor` (response cache, usage ledger);
3. under the (project, version) write lock lists them again and imports only the predictions of
   tasks still without one (:func:`write_fresh`): two overlapping runs never give a task two
   predictions of the same version;
4. removes the tasks' in-progress markers (overflow) and records its counts in the run record
   (:mod:`backend.runstore`; a chunk recorded twice counts once).
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from backend.pricing import cost_usd, price_for
from backend.providers.base import Usage
from backend.runstore import RunStore, open_run_store
from core.settings import Settings

log = logging.getLogger(__name__)

CHUNK_JOB = "backend.runwork.run_chunk"
RUN_CHUNK = 50               # tasks per chunk job
CHUNK_RETRY = (3, [5, 30, 120])   # RQ retries of a chunk job, and the seconds before each


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def chunk_timeout(n_tasks: int) -> int:
    """Seconds a chunk of ``n_tasks`` may take: 10 s a task, at least 10 minutes."""
    return max(600, 10 * n_tasks)


@dataclass
class Chunk:
    run_id: str
    n: int
    project: int
    version: str
    task_ids: list[int]
    use_cache: bool = True
    tasks: list[dict] | None = None   # the tasks' {"id", "data"} when the caller has them (saves a listing)

    @property
    def job_id(self) -> str:
        return f"{self.run_id}-{self.n}"


def split(run_id: str, project: int, version: str, tasks: list, size: int = RUN_CHUNK,
          use_cache: bool = True) -> list[Chunk]:
    """The run's chunks, in task order; ``tasks`` are ids, or ``{"id", "data"}`` dicts (carried by the chunks).

    >>> [c.task_ids for c in split("r", 1, "v", [1, 2, 3, 4, 5], size=2)]
    [[1, 2], [3, 4], [5]]
    """
    size = max(1, size)
    chunks = []
    for n, i in enumerate(range(0, len(tasks), size)):
        part = tasks[i:i + size]
        full = [{"id": t["id"], "data": t.get("data") or {}} for t in part] if part and isinstance(part[0], dict) \
            else None
        chunks.append(Chunk(run_id, n, project, version, [t["id"] if full else t for t in part], use_cache, full))
    return chunks


def counts(outcomes: list, price) -> dict:
    """A chunk's counts (see ``backend.runstore.COUNTS``) from its predictor outcomes."""
    c: dict[str, Any] = {"tasks": len(outcomes), "cached": 0, "provider_calls": 0, "input_tokens": 0,
                         "output_tokens": 0}
    failed: Counter = Counter()
    for o in outcomes:
        if o.cached:
            c["cached"] += 1
        elif o.usage is not None:
            c["provider_calls"] += 1
            c["input_tokens"] += o.usage.input_tokens
            c["output_tokens"] += o.usage.output_tokens
        if not o.ok:
            failed[o.status] += 1
    return dict(c, failed=dict(failed), usd=cost_usd(Usage(c["input_tokens"], c["output_tokens"]), price))


def write_fresh(client, store: RunStore, project: int, version: str, preds: list[dict],
                keep: bool = False) -> tuple[Any, int]:
    """Import ``preds`` except on tasks that already have a prediction of ``version``, under the
    (project, version) write lock; returns (how many were written, or with ``keep`` which, skipped)."""
    if not preds:
        return ([] if keep else 0), 0
    with store.write_lock(str(project), version):
        listed = client.tasks_by_ids(project, [p["task"] for p in preds])
        free = {t["id"] for t in listed if not any(p.get("model_version") == version for p in t["predictions"])}
        fresh = [p for p in preds if p["task"] in free]   # not written meanwhile, still in the project
        if fresh:
            client.import_predictions(project, fresh)
    return (fresh if keep else len(fresh)), len(preds) - len(fresh)


class ChunkRunner:
    """Runs chunks in this process (an RQ job, the embedded queue, or ``scoring run`` without Redis)."""

    def __init__(self, settings: Settings, store: RunStore | None = None, client=None, versions=None, ledger=None):
        from backend.ledger import open_ledger
        from backend.versions import load_versions
        from core.labelstudio import LabelStudioClient

        self.settings = settings
        self.store = store or open_run_store(settings)
        self.client = client or LabelStudioClient(settings)  # ConfigError without LABEL_STUDIO_URL / _API_KEY
        self.versions = versions or load_versions(settings.prompts_file, settings.default_version)
        self.ledger = ledger if ledger is not None else open_ledger(settings)
        self._predictors: dict[tuple[bool, int], Any] = {}

    def predictor(self, use_cache: bool, n_tasks: int):
        """A predictor whose deadline is the chunk's own time budget (no Label Studio request waits)."""
        from backend.predictor import Predictor

        budget = chunk_timeout(max(n_tasks, RUN_CHUNK)) - 60
        if (use_cache, budget) not in self._predictors:
            self._predictors[(use_cache, budget)] = Predictor(
                self.settings.replace(predict_deadline=float(budget)), self.versions, ledger=self.ledger,
                cache="auto" if use_cache else None)
        return self._predictors[(use_cache, budget)]

    def run(self, chunk: Chunk) -> dict:
        """Predict and write one chunk; record and return its counts."""
        version = self.versions.get(chunk.version)
        done = self.store.chunk_result(chunk.run_id, chunk.n)
        if done is not None:   # a repeat of a finished chunk (a retry after its worker died): nothing to redo
            return done
        if chunk.tasks is not None:   # the data came with the chunk: the locked write skips what has one meanwhile
            listed = [dict(t, predictions=[]) for t in chunk.tasks]
        else:
            listed = self.client.tasks_by_ids(chunk.project, chunk.task_ids)
        todo = [{"id": t["id"], "data": t["data"]} for t in listed
                if not any(p.get("model_version") == version.id for p in t["predictions"])]
        predictor = self.predictor(chunk.use_cache, len(todo))
        outcomes = []
        t0 = time.perf_counter()
        if todo:
            label_config = self.client.label_config(chunk.project)
            outcomes = predictor.predict(todo, label_config, version.id, project=str(chunk.project))
        preds = [dict(p, task=o.task_id) for o in outcomes if (p := predictor.prediction(o, version.id))]
        t1 = time.perf_counter()
        written, skipped = write_fresh(self.client, self.store, chunk.project, version.id, preds)
        ok = {o.task_id for o in outcomes if o.ok}
        result = dict(counts(outcomes, price_for(version)), tasks=len(chunk.task_ids),
                      predicted=min(written, len(ok)), skipped_existing=len(listed) - len(todo) + skipped,
                      predict_s=round(t1 - t0, 3), write_s=round(time.perf_counter() - t1, 3))
        missing = len(chunk.task_ids) - len(listed)
        if missing:
            result["failed"] = dict(result["failed"], not_in_project=missing)
        self.store.unmark(str(chunk.project), version.id, chunk.task_ids)
        self.store.chunk_done(chunk.run_id, chunk.n, result)
        log.info("run %s chunk %d (project %s, %s): %s", chunk.run_id, chunk.n, chunk.project, version.id, result)
        return result


def start_run(store: RunStore, sink, chunks: list[Chunk], meta: dict) -> str:
    """Record a run and hand its chunks to ``sink`` (``enqueue_chunks``: RQ or the embedded queue)."""
    run_id = chunks[0].run_id if chunks else meta.get("run_id") or new_run_id()
    meta = dict(meta, run_id=run_id, chunks=len(chunks), created=meta.get("created") or time.time(),
                mode=getattr(sink, "mode", "queue"))
    store.create(run_id, meta)
    if chunks:
        sink.enqueue_chunks(chunks)
    return run_id


def enqueue_rq(queue, chunks: list[Chunk]) -> list[str]:
    """Enqueue chunk jobs on an RQ queue (deterministic ids, retried), in one round trip."""
    from rq import Queue, Retry

    datas = [Queue.prepare_data(CHUNK_JOB, args=(asdict(c),), job_id=c.job_id, timeout=chunk_timeout(len(c.task_ids)),
                                result_ttl=86400, failure_ttl=7 * 86400,
                                retry=Retry(max=CHUNK_RETRY[0], interval=CHUNK_RETRY[1]),
                                description=f"run {c.run_id} chunk {c.n}: {len(c.task_ids)} tasks")
             for c in chunks]
    return [j.id for j in queue.enqueue_many(datas)]


def run_chunk(chunk: dict) -> dict:
    """RQ job (``backend.runwork.run_chunk``): run one chunk with the worker's settings."""
    from rq import get_current_job

    job = get_current_job()
    settings = Settings.from_env()
    store = None
    if job is not None:
        settings = settings.replace(queue_name=job.origin)
        store = open_run_store(settings, connection=job.connection)
    return ChunkRunner(settings, store=store).run(Chunk(**chunk))
