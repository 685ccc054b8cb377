"""The embedded queue: pre-labelling on import and ``/predict`` overflow without Redis.

Without ``REDIS_URL`` the backend runs chunk jobs (:mod:`backend.runwork`) in its own process:
two daemon threads take chunks from an in-memory queue.  Every chunk is
first written to ``DATA_DIR/embedded-jobs.sqlite3`` and deleted only once it is done, so a backend
that stops (or is killed) resumes its unfinished chunks at the next start; a chunk that runs
twice redoes nothing (it skips tasks that have a prediction of the version).  A chunk that raises
is tried again after ``RETRY_AFTER`` seconds, up to ``ATTEMPTS`` times, then left in the file
with its error (``failed``) and logged.

It needs ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` to write predictions; without them
:func:`build_embedded` returns None and says so (log; ``/health`` names it).
"""
from __future__ import annotations

import json
import logging
import queue as queue_mod
import threading
import time
from dataclasses import asdict

from backend.runstore import open_run_store
from backend.runwork import Chunk, ChunkRunner, split, start_run
from core.settings import Settings
from core.stores import SQLiteFile, sqlite_path

log = logging.getLogger(__name__)

ATTEMPTS = 3
RETRY_AFTER = 5.0
SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, chunk TEXT, attempts INTEGER DEFAULT 0,
                                             state TEXT DEFAULT 'pending', error TEXT)"""
NO_LABEL_STUDIO = ("LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY are not set in the backend: pre-labelling on import "
                   "and /predict overflow are off (tasks past PREDICT_DEADLINE get no prediction until asked again)")


def missing_label_studio(settings: Settings) -> str | None:
    """Why the backend cannot write predictions itself (None: it can)."""
    return None if settings.label_studio_url and settings.label_studio_api_key else NO_LABEL_STUDIO


class EmbeddedQueue:
    """Chunk jobs run by threads of this process, with a durable record (see the module docstring)."""

    mode = "embedded"

    def __init__(self, settings: Settings, runner: ChunkRunner | None = None, workers: int = 2):
        self.settings = settings
        self.store = open_run_store(settings)
        self.runner = runner or ChunkRunner(settings, store=self.store)
        self.db = SQLiteFile(sqlite_path(settings, "embedded-jobs.sqlite3"), SCHEMA, what="the embedded job queue")
        self.q: queue_mod.Queue = queue_mod.Queue()
        for (raw,) in self.db.query("SELECT chunk FROM jobs WHERE state = 'pending' ORDER BY rowid"):
            self.q.put(Chunk(**json.loads(raw)))   # resumed after a restart
        self.threads = [threading.Thread(target=self._work, name=f"embedded-{i}", daemon=True)
                        for i in range(max(1, workers))]
        for t in self.threads:
            t.start()

    def enqueue_chunks(self, chunks: list[Chunk]) -> None:
        with self.db.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO jobs (id, chunk) VALUES (?, ?)",
                           [(c.job_id, json.dumps(asdict(c))) for c in chunks])
        for c in chunks:
            self.q.put(c)

    def start_run(self, project: int, version: str, task_ids: list, source: str) -> str:
        """Record a run of ``task_ids`` and queue its chunks; returns the run id."""
        from backend.runwork import new_run_id

        run_id = new_run_id()
        chunks = split(run_id, project, version, task_ids)
        return start_run(self.store, self, chunks, {"project": project, "version": version, "source": source,
                                                    "selected": len(task_ids)})

    def submit(self, action: str, project_id: str | None, event: dict, version_id: str):
        """The webhook hand-off: ``TASKS_CREATED`` starts a run of the new tasks (rescoring needs Redis)."""
        from backend.jobs import Submitted, event_work

        work = event_work(action, project_id, event, version_id)
        if work is None or work["job"] != "prelabel":
            if work is not None:
                log.info("%s: rescoring on annotation changes needs REDIS_URL and `python -m scoring worker`", action)
            return Submitted()
        return Submitted(self.start_run(int(work["project"]), version_id, work["tasks"], source="import"))

    def idle(self) -> bool:
        return self.q.unfinished_tasks == 0

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every queued chunk is done (tests, shutdown); True when idle."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.idle():
                return True
            time.sleep(0.05)
        return self.idle()

    def _work(self) -> None:
        while True:
            chunk = self.q.get()
            try:
                self._run(chunk)
            finally:
                self.q.task_done()

    def _run(self, chunk: Chunk) -> None:
        try:
            self.runner.run(chunk)
            self.db.execute("DELETE FROM jobs WHERE id = ?", (chunk.job_id,))
        except Exception as exc:
            self.db.execute("UPDATE jobs SET attempts = attempts + 1, error = ? WHERE id = ?", (str(exc), chunk.job_id))
            rows = self.db.query("SELECT attempts FROM jobs WHERE id = ?", (chunk.job_id,))
            if rows and rows[0][0] < ATTEMPTS:
                log.warning("run %s chunk %d failed (%s); trying again in %g s", chunk.run_id, chunk.n, exc,
                            RETRY_AFTER)
                threading.Timer(RETRY_AFTER, self.q.put, (chunk,)).start()
            else:
                self.db.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (chunk.job_id,))
                log.error("run %s chunk %d failed %d times, left in %s: %s", chunk.run_id, chunk.n, ATTEMPTS,
                          self.db.path, exc)


def build_embedded(settings: Settings) -> EmbeddedQueue | None:
    """The embedded queue, or None (logged) when the backend cannot write to Label Studio."""
    problem = missing_label_studio(settings)
    if problem:
        log.warning(problem)
        return None
    return EmbeddedQueue(settings)
