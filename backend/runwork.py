"""Chunk jobs: predict a chunk of a run's tasks and write the predictions into Label Studio.

A run's task ids are cut into chunks of ``RUN_CHUNK``; each chunk is one job, enqueued by dotted
path (:data:`CHUNK_JOB`) on the RQ queue with the deterministic id ``<run id>-<n>`` (any number
of ``python -m scoring worker`` processes on any number of machines share a run), or run by the
backend's embedded queue (:mod:`backend.embedded`) without Redis.  A chunk job:

1. takes its tasks' data from the job (a run's chunks carry it), or lists them in Label Studio and
   drops those that already have a prediction of the version;
2. predicts them through :class:`backend.predictor.Predictor` (response cache, usage ledger) and,
   while it predicts, writes every ``WRITE_BATCH`` predictions to Label Studio from a thread of
   its own (:class:`StreamWriter`), so Label Studio stores the first ones while the model answers
   the next: each write asks Label Studio, under the (project, version) write lock, which of the
   tasks got a prediction of the version meanwhile and imports only the others
   (:func:`write_fresh`): two overlapping runs, or a chunk that runs again (a retry after its worker
   was killed, its answers then coming from the response cache), never give a task two predictions
   of the same version;
3. waits for the last write;
4. removes the tasks' in-progress markers (overflow) and records its counts in the run record
   (:mod:`backend.runstore`; a chunk recorded twice counts once).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from backend.pricing import cost_usd, price_for
from backend.providers.base import Usage
from backend.runstore import LOCK_TTL, RedisRunStore, RunStore, open_run_store
from core.errors import LabelStudioError
from core.settings import Settings

log = logging.getLogger(__name__)

CHUNK_JOB = "backend.runwork.run_chunk"
RUN_CHUNK = 500              # tasks per chunk job
WRITE_BATCH = 200            # predictions per Label Studio import while a chunk is predicting (no Redis)
QUEUE_EVERY = 32             # predictions queued for the write loops at a time (Redis)
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
    (project, version) write lock; returns (how many were written, or with ``keep`` which, skipped).

    The check asks Label Studio only for the tasks among them that have one
    (:meth:`~core.labelstudio.LabelStudioClient.tasks_with_version`); see :func:`import_present`.
    """
    if not preds:
        return ([] if keep else 0), 0
    with store.write_lock(str(project), version):
        taken = client.tasks_with_version(project, [p["task"] for p in preds], version)
        fresh = import_present(client, project, [p for p in preds if p["task"] not in taken])
    return (fresh if keep else len(fresh)), len(preds) - len(fresh)


def import_present(client, project: int, preds: list[dict]) -> list[dict]:
    """Import ``preds``; returns those written.  A task deleted from the project meanwhile makes Label
    Studio refuse the whole import (HTTP 400, nothing written): the tasks still there are then listed
    and written without it."""
    if not preds:
        return []
    try:
        client.import_predictions(project, preds, chunk=len(preds))
        return preds
    except LabelStudioError as exc:
        if exc.status != 400:
            raise
        there = {t["id"] for t in client.tasks_by_ids(project, [p["task"] for p in preds])}
        if len(there) == len(preds):
            raise
    fresh = [p for p in preds if p["task"] in there]
    log.warning("project %s: %d task(s) left the project meanwhile; their predictions are dropped",
                project, len(preds) - len(fresh))
    if fresh:
        client.import_predictions(project, fresh, chunk=len(fresh))
    return fresh


class StreamWriter:
    """Writes predictions to Label Studio from a thread of its own while more are being predicted.

    ``add(prediction)`` (thread-safe, from the predictor's worker threads) queues one; every
    ``batch`` queued ones are written by :func:`write_fresh` (so a chunk's model calls go on
    while Label Studio stores the first ones), and :meth:`close` writes the rest and returns
    (the task ids written, how many were skipped because the task had one meanwhile).  The
    first failed write is raised by :meth:`close`; nothing is written after it.

    >>> class LS:
    ...     def tasks_with_version(self, project, ids, version): return {2}
    ...     def import_predictions(self, project, preds, chunk=0): imported.extend(p["task"] for p in preds)
    >>> imported = []
    >>> w = StreamWriter(LS(), _NoLock(), 1, "v", batch=2)
    >>> for t in (1, 2, 3): w.add({"task": t, "model_version": "v", "result": []})
    >>> w.close(), sorted(imported)
    (({1, 3}, 1), [1, 3])
    """

    def __init__(self, client, store: RunStore, project: int, version: str, batch: int = WRITE_BATCH):
        self.client, self.store, self.project, self.version = client, store, project, version
        self.batch = max(1, batch)
        self.written: set[int] = set()
        self.skipped = 0
        self.write_s = 0.0          # seconds spent writing (overlapping the predictions)
        self.error: BaseException | None = None
        self._pending: list[dict] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"write-{project}-{version}", daemon=True)
        self._thread.start()

    def add(self, prediction: dict) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.append(prediction)
            if len(self._pending) >= self.batch:
                self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._pending) >= self.batch)
                take, self._pending = self._pending, []
                last = self._closed
            if take and self.error is None:
                t0 = time.perf_counter()
                try:
                    fresh, skipped = write_fresh(self.client, self.store, self.project, self.version, take, keep=True)
                    self.written.update(p["task"] for p in fresh)
                    self.skipped += skipped
                except BaseException as exc:  # raised by close(), in the caller's thread
                    self.error = exc
                self.write_s += time.perf_counter() - t0
            if last:
                return

    def close(self) -> tuple[set[int], int]:
        """Write what is left; returns (task ids written, skipped); raises the first write error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.written, self.skipped


class _NoLock:
    """A store whose write lock is no lock (the doctest above)."""

    @contextmanager
    def write_lock(self, project: str, version: str) -> Iterator[None]:
        yield


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
        label_config = self.client.label_config(chunk.project) if todo else ""
        written: set[int] = set()
        if isinstance(self.store, RedisRunStore):   # queue mode: the write loops import them (backend.runwrites)
            outcomes, queued, seconds = predict_and_queue(predictor, self.store, chunk, version.id, todo,
                                                          label_config)
            skipped = 0
            left = [t for t in chunk.task_ids if t not in queued]   # their markers go when written
        else:
            outcomes, written, skipped, seconds = predict_and_write(
                predictor, self.client, self.store, chunk.project, version.id, todo, label_config)
            left = chunk.task_ids
        ok = {o.task_id for o in outcomes if o.ok}
        result = dict(counts(outcomes, price_for(version)), tasks=len(chunk.task_ids),
                      predicted=len(written & ok), skipped_existing=len(listed) - len(todo) + skipped,
                      **seconds)
        missing = len(chunk.task_ids) - len(listed)
        if missing:
            result["failed"] = dict(result["failed"], not_in_project=missing)
        self.store.unmark(str(chunk.project), version.id, left)
        self.store.chunk_done(chunk.run_id, chunk.n, result)
        if isinstance(self.store, RedisRunStore) and not self.store.writer_alive():   # no write loop: write them now
            from backend.runwrites import drain

            drain(self.store, self.client, str(chunk.project), version.id, wait=LOCK_TTL)
        log.info("run %s chunk %d (project %s, %s): %s", chunk.run_id, chunk.n, chunk.project, version.id, result)
        return result


def predict_and_write(predictor, client, store: RunStore, project: int, version_id: str, tasks: list[dict],
                      label_config: str) -> tuple[list, set[int], int, dict]:
    """Predict ``tasks`` and write their predictions while predicting (:class:`StreamWriter`).

    Returns (the outcomes, the task ids written, how many were skipped because the task had a
    prediction of the version meanwhile, ``{"predict_s", "write_s", "tail_s"}``: seconds predicting,
    seconds Label Studio took to store (overlapping the former), seconds waited for the last write).
    What was predicted is written even when predicting fails (the error is then raised)."""
    writer = StreamWriter(client, store, project, version_id)

    def add(outcome) -> None:
        p = predictor.prediction(outcome, version_id)
        if p is not None:
            writer.add(dict(p, task=outcome.task_id))

    outcomes = []
    t0 = time.perf_counter()
    try:
        if tasks:
            outcomes = predictor.predict(tasks, label_config, version_id, project=str(project), on_outcome=add)
    except BaseException:
        try:
            writer.close()
        except Exception as exc:
            log.warning("project %s, %s: writing the predictions failed too: %s", project, version_id, exc)
        raise
    t1 = time.perf_counter()
    written, skipped = writer.close()
    return outcomes, written, skipped, {"predict_s": round(t1 - t0, 3), "write_s": round(writer.write_s, 3),
                                        "tail_s": round(time.perf_counter() - t1, 3)}


def queue_item(predictor, outcome, version_id: str) -> dict | None:
    """What the write queue holds for one outcome (``RedisRunStore.push_writes``): ``{"task", "ok",
    "pred"}``; None when the task gets no prediction (it failed and ``FAILED_TASK_RESULT=skip``)."""
    p = predictor.prediction(outcome, version_id)
    return None if p is None else {"task": outcome.task_id, "ok": outcome.ok, "pred": dict(p, task=outcome.task_id)}


def predict_and_queue(predictor, store: RedisRunStore, chunk: Chunk, version_id: str, tasks: list[dict],
                      label_config: str) -> tuple[list, set[int], dict]:
    """Predict ``tasks``, queueing their predictions for the write loops (:mod:`backend.runwrites`)
    ``QUEUE_EVERY`` at a time as they are made, the rest at the end; returns (the outcomes, the task
    ids queued, ``{"predict_s"}``).  A chunk killed meanwhile loses at most what was not queued yet:
    its retry predicts that again (from the response cache)."""
    queued: set[int] = set()
    buffer: list[dict] = []
    lock = threading.Lock()

    def push(items: list[dict]) -> None:
        store.push_writes(str(chunk.project), version_id, chunk.run_id, items)
        queued.update(i["task"] for i in items)

    def add(outcome) -> None:
        item = queue_item(predictor, outcome, version_id)
        if item is None:
            return
        with lock:
            buffer.append(item)
            if len(buffer) < QUEUE_EVERY:
                return
            items = buffer[:]
            buffer.clear()
            push(items)

    t0 = time.perf_counter()
    outcomes = predictor.predict(tasks, label_config, version_id, project=str(chunk.project),
                                 on_outcome=add) if tasks else []
    with lock:
        push(buffer)
    return outcomes, queued, {"predict_s": round(time.perf_counter() - t0, 3)}


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
