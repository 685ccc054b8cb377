"""Run records, in-progress markers and the per-(project, version) write lock of chunked runs.

A *run* (``python -m scoring run``, a ``/predict`` overflow, an import in embedded mode) is
split into chunks of task ids; each chunk is predicted and written by a chunk job
(:mod:`backend.runwork`) on an RQ worker or the backend's embedded queue.  This module keeps
what they share:

* the **run record**: who/what/when (``meta``) and, per finished chunk, its counts.  Totals
  are summed over the chunks when read, so a chunk that runs twice (a retry after a worker
  was killed) is counted once.  In Redis (``REDIS_URL``; keys under
  ``llm-prelabel:runs:<queue>:``, the queue name keeping test runs apart) or in SQLite
  (``DATA_DIR/runs.sqlite3``) without it::

      llm-prelabel:runs:<queue>:<run id>            hash  meta -> JSON, status -> text, pending, dropped -> int
      llm-prelabel:runs:<queue>:<run id>:chunks     hash  chunk number -> JSON counts
      llm-prelabel:runs:<queue>:project:<project>   zset  run id by creation time
      llm-prelabel:runs:<queue>:<run id>:written    set   task ids the run wrote (noted before the import)
      llm-prelabel:runs:<queue>:<run id>:written_ok set   ... of them, tasks that got an answer (``predicted``)
      llm-prelabel:runs:<queue>:<run id>:skipped    set   task ids skipped: another run had written one

* in queue mode, the **predictions waiting to be written** (``backend.runwrites``)::

      llm-prelabel:runs:<queue>:writes                       set   [project, version] with some waiting
      llm-prelabel:runs:<queue>:writes:<project>:<version>   list  JSON {task, ok, pred, run}
      llm-prelabel:runs:<queue>:writes:<project>:<version>:at      when the last import ended, and how long
                                                                   it took: "<epoch s> <seconds>"
      llm-prelabel:runs:<queue>:writer-alive                 a write loop beat in the last few seconds

* **in-progress markers** per (project, version, task): set while an overflow run owns a
  task, so a ``/predict`` meanwhile answers ``[]`` for it without calling the model;
  removed when the chunk wrote it (and expiring anyway after ``MARKER_TTL`` seconds);

* the **write lock** per (project, version): a chunk lists its tasks' predictions again and
  imports only those still without one *while holding it*, so two runs (or a run and a
  retry of one of its chunks) never give a task two predictions of the same version.  A
  Redis lock (expiring: a killed holder frees it) or, without Redis, a file lock in
  ``DATA_DIR/locks`` (released by the kernel when the holder dies).

>>> totals([{"predicted": 2, "failed": {"deadline": 1}, "usd": 0.5}, {"predicted": 3, "usd": None}])["predicted"]
5
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from core.locks import exclusive
from core.settings import Settings
from core.stores import SQLiteFile, key, redis_connection, sqlite_path

MARKER_TTL = 3600          # s an in-progress marker lives at most
LOCK_TTL = 300             # s a chunk waits at most for the (project, version) write lock
WRITE_LOCK_TTL = 30        # s the write lock outlives a holder that stopped renewing it (killed)
COUNTS = ("tasks", "predicted", "skipped_existing", "cached", "provider_calls", "input_tokens", "output_tokens")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, project TEXT, created REAL, status TEXT, meta TEXT);
CREATE TABLE IF NOT EXISTS chunks (run TEXT, n INTEGER, result TEXT, PRIMARY KEY (run, n));
CREATE TABLE IF NOT EXISTS markers (project TEXT, version TEXT, task INTEGER, expires REAL,
                                    PRIMARY KEY (project, version, task));
"""


def totals(chunks: Iterable[dict]) -> dict:
    """The run's counts: the sum of its finished chunks' counts (USD unknown if any chunk's is)."""
    chunks = list(chunks)
    out: dict[str, Any] = {k: 0 for k in COUNTS}
    failed: Counter = Counter()
    usd: float | None = 0.0
    for c in chunks:
        for k in COUNTS:
            out[k] += int(c.get(k) or 0)
        failed.update(c.get("failed") or {})
        usd = None if usd is None or c.get("usd") is None else usd + c["usd"]
    seconds = {k: round(sum(float(c.get(k) or 0) for c in chunks), 3) for k in ("predict_s", "write_s")}
    return dict(out, failed=dict(failed), usd=usd, **seconds)


def summarise(meta: dict, status: str, chunks: dict[int, dict], writes: dict | None = None) -> dict:
    """One run as ``runs`` lists it: meta, status, chunks done, totals.  ``writes`` (queue mode):
    ``{"predicted", "skipped_existing", "pending", "dropped"}`` of its predictions written by
    :mod:`backend.runwrites`;
    the run is finished when every chunk is done and none of its predictions waits to be written."""
    writes = writes or {}
    done = dict(meta, **totals(chunks.values()), chunks_done=len(chunks))
    for k in ("predicted", "skipped_existing"):
        done[k] += int(writes.get(k) or 0)
    done["writes_pending"] = max(0, int(writes.get("pending") or 0))
    if writes.get("dropped"):   # its task (or project) left Label Studio before the prediction was written
        done["failed"] = dict(done["failed"], not_in_project=done["failed"].get("not_in_project", 0)
                              + int(writes["dropped"]))
    if status == "running" and len(chunks) >= int(meta.get("chunks") or 0) and not done["writes_pending"]:
        status = "finished"
    return dict(done, status=status)


FORGET_IF_EMPTY = """
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


class RedisRunStore:
    def __init__(self, connection, queue_name: str):
        self.r, self.base = connection, key("runs", queue_name)

    def create(self, run_id: str, meta: dict) -> None:
        with self.r.pipeline() as p:
            p.hset(f"{self.base}:{run_id}", mapping={"meta": json.dumps(meta), "status": "running"})
            p.zadd(f"{self.base}:project:{meta['project']}", {run_id: meta["created"]})
            p.execute()

    def chunk_done(self, run_id: str, n: int, result: dict) -> None:
        self.r.hset(f"{self.base}:{run_id}:chunks", str(n), json.dumps(result))

    def chunk_result(self, run_id: str, n: int) -> dict | None:
        raw = self.r.hget(f"{self.base}:{run_id}:chunks", str(n))
        return None if raw is None else json.loads(raw)

    def set_status(self, run_id: str, status: str) -> None:
        self.r.hset(f"{self.base}:{run_id}", "status", status)

    def get(self, run_id: str) -> dict | None:
        raw = self.r.hgetall(f"{self.base}:{run_id}")
        if not raw:
            return None
        chunks = {int(k): json.loads(v) for k, v in self.r.hgetall(f"{self.base}:{run_id}:chunks").items()}
        with self.r.pipeline(transaction=False) as p:
            p.scard(f"{self.base}:{run_id}:written_ok")
            p.scard(f"{self.base}:{run_id}:skipped")
            ok, skipped = p.execute()
        writes = {"predicted": ok, "skipped_existing": skipped, "pending": int(raw.get(b"pending") or 0),
                  "dropped": int(raw.get(b"dropped") or 0)}
        return summarise(json.loads(raw[b"meta"]), raw[b"status"].decode(), chunks, writes)

    def runs(self, project: int | str, limit: int = 50) -> list[dict]:
        ids = self.r.zrevrange(f"{self.base}:project:{project}", 0, limit - 1)
        return [run for i in ids if (run := self.get(i.decode())) is not None]

    # -- in-progress markers
    def mark(self, project: str, version: str, task_ids: list[int]) -> None:
        with self.r.pipeline() as p:
            for t in task_ids:
                p.set(f"{self.base}:busy:{project}:{version}:{t}", "1", ex=MARKER_TTL)
            p.execute()

    def marked(self, project: str, version: str, task_ids: list[int]) -> set[int]:
        if not task_ids:
            return set()
        flags = self.r.mget([f"{self.base}:busy:{project}:{version}:{t}" for t in task_ids])
        return {t for t, f in zip(task_ids, flags, strict=True) if f is not None}

    def unmark(self, project: str, version: str, task_ids: list[int]) -> None:
        if task_ids:
            self.r.delete(*[f"{self.base}:busy:{project}:{version}:{t}" for t in task_ids])

    @contextmanager
    def write_lock(self, project: str, version: str, wait: float = LOCK_TTL) -> Iterator[None]:
        """The Redis lock, renewed while held (``core.locks.exclusive``): a SIGKILLed holder frees it
        ``WRITE_LOCK_TTL`` s later, not after the whole wait.  ``LockBusy`` after ``wait`` s."""
        with exclusive(self.r, f"{self.base}:lock:{project}:{version}", ttl=WRITE_LOCK_TTL, wait=wait,
                       what="prediction write"):
            yield

    # -- predictions waiting to be written (queue mode; see backend.runwrites)
    def _writes(self, project, version) -> str:
        return f"{self.base}:writes:{project}:{version}"

    def push_writes(self, project: str, version: str, run_id: str, items: list[dict]) -> None:
        """Queue ``items`` (``{"task", "ok", "pred"}``) of ``run_id`` for writing, durably."""
        if not items:
            return
        with self.r.pipeline() as p:
            p.rpush(self._writes(project, version), *[json.dumps(dict(i, run=run_id)) for i in items])
            p.sadd(f"{self.base}:writes", json.dumps([str(project), version]))
            p.hincrby(f"{self.base}:{run_id}", "pending", len(items))
            p.execute()

    def write_keys(self) -> list[tuple[str, str]]:
        """The (project, version) pairs with predictions waiting (or that had some lately)."""
        return [tuple(json.loads(k)) for k in self.r.smembers(f"{self.base}:writes")]  # type: ignore[misc]

    def peek_writes(self, project: str, version: str, n: int) -> list[dict]:
        """The first ``n`` waiting items (left waiting until :meth:`done_writes`)."""
        return [json.loads(i) for i in self.r.lrange(self._writes(project, version), 0, n - 1)]

    def claim_written(self, tasks_by_run: dict[str, list[int]], claim: bool = True) -> None:
        """Note (``claim=False``: unnote) tasks as written by their run -- before importing them, so a
        writer killed after the import leaves them counted as the run's own, not as skipped."""
        with self.r.pipeline() as p:
            for run, tasks in tasks_by_run.items():
                if tasks:
                    (p.sadd if claim else p.srem)(f"{self.base}:{run}:written", *tasks)
            p.execute()

    def written_by(self, run_of_task: dict[int, str]) -> set[int]:
        """Which of these tasks their run already noted as written."""
        if not run_of_task:
            return set()
        with self.r.pipeline(transaction=False) as p:
            for task, run in run_of_task.items():
                p.sismember(f"{self.base}:{run}:written", task)
            flags = p.execute()
        return {t for t, f in zip(run_of_task, flags, strict=True) if f}

    def done_writes(self, project: str, version: str, n: int, per_run: dict[str, dict]) -> None:
        """Drop the first ``n`` waiting items; per run ``{"entries", "ok": [tasks], "skipped": [tasks]}``."""
        wkey = self._writes(project, version)
        with self.r.pipeline() as p:
            p.ltrim(wkey, n, -1)
            for run, c in per_run.items():
                p.hincrby(f"{self.base}:{run}", "pending", -int(c["entries"]))
                if c.get("dropped"):
                    p.hincrby(f"{self.base}:{run}", "dropped", int(c["dropped"]))
                if c["ok"]:
                    p.sadd(f"{self.base}:{run}:written_ok", *c["ok"])
                if c["skipped"]:
                    p.sadd(f"{self.base}:{run}:skipped", *c["skipped"])
            p.eval(FORGET_IF_EMPTY, 2, wkey, f"{self.base}:writes", json.dumps([str(project), version]))
            p.execute()

    def queued_writes(self, project: str, version: str) -> int:
        return int(self.r.llen(self._writes(project, version)))

    def more_coming(self, project: str, version: str) -> bool:
        """Whether the run of the newest queued prediction of (project, version) still has chunks to do
        (its predictions keep coming); False when nothing is queued or the run is unknown."""
        newest = self.r.lindex(self._writes(project, version), -1)
        if newest is None:
            return False
        run = json.loads(newest).get("run")
        with self.r.pipeline(transaction=False) as p:
            p.hget(f"{self.base}:{run}", "meta")
            p.hlen(f"{self.base}:{run}:chunks")
            meta, done = p.execute()
        return meta is not None and int(done) < int(json.loads(meta).get("chunks") or 0)

    def note_import(self, project: str, version: str, seconds: float) -> None:
        """An import of (project, version) ended now, after ``seconds``."""
        self.r.set(f"{self._writes(project, version)}:at", f"{time.time()!r} {seconds!r}", ex=86400)

    def last_import(self, project: str, version: str) -> tuple[float, float]:
        """(when, epoch s, the last import of (project, version) ended; how many seconds it took); 0s if never."""
        raw = self.r.get(f"{self._writes(project, version)}:at")
        at, took = (raw.decode().split() if raw else ("0", "0"))
        return float(at), float(took)

    def writer_beat(self, ttl: float) -> None:
        """A write loop is alive (for ``ttl`` s): chunk jobs leave their writes to it."""
        self.r.set(f"{self.base}:writer-alive", "1", px=int(ttl * 1000))

    def writer_alive(self) -> bool:
        return bool(self.r.exists(f"{self.base}:writer-alive"))


class SQLiteRunStore:
    _locks: dict[str, threading.Lock] = {}

    def __init__(self, settings: Settings):
        self.db = SQLiteFile(sqlite_path(settings, "runs.sqlite3"), SCHEMA, what="the run records")
        self.lock_dir = os.path.join(settings.data_dir, "locks")

    def create(self, run_id: str, meta: dict) -> None:
        self.db.execute("INSERT INTO runs VALUES (?, ?, ?, 'running', ?)",
                        (run_id, str(meta["project"]), meta["created"], json.dumps(meta)))

    def chunk_done(self, run_id: str, n: int, result: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)", (run_id, n, json.dumps(result)))

    def chunk_result(self, run_id: str, n: int) -> dict | None:
        rows = self.db.query("SELECT result FROM chunks WHERE run = ? AND n = ?", (run_id, n))
        return json.loads(rows[0][0]) if rows else None

    def set_status(self, run_id: str, status: str) -> None:
        self.db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def get(self, run_id: str) -> dict | None:
        rows = self.db.query("SELECT meta, status FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        chunks = {n: json.loads(r) for n, r in self.db.query("SELECT n, result FROM chunks WHERE run = ?", (run_id,))}
        return summarise(json.loads(rows[0][0]), rows[0][1], chunks)

    def runs(self, project: int | str, limit: int = 50) -> list[dict]:
        ids = self.db.query("SELECT id FROM runs WHERE project = ? ORDER BY created DESC LIMIT ?",
                            (str(project), limit))
        return [run for (i,) in ids if (run := self.get(i)) is not None]

    def mark(self, project: str, version: str, task_ids: list[int]) -> None:
        until = time.time() + MARKER_TTL
        with self.db.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO markers VALUES (?, ?, ?, ?)",
                           [(project, version, t, until) for t in task_ids])

    def marked(self, project: str, version: str, task_ids: list[int]) -> set[int]:
        rows = self.db.query("SELECT task FROM markers WHERE project = ? AND version = ? AND expires > ?",
                             (project, version, time.time()))
        wanted = set(task_ids)
        return {t for (t,) in rows if t in wanted}

    def unmark(self, project: str, version: str, task_ids: list[int]) -> None:
        with self.db.transaction() as db:
            db.executemany("DELETE FROM markers WHERE project = ? AND version = ? AND task = ?",
                           [(project, version, t) for t in task_ids])

    @contextmanager
    def write_lock(self, project: str, version: str, wait: float = LOCK_TTL) -> Iterator[None]:
        """A thread lock (this process) and an ``fcntl`` file lock (other processes on this machine)."""
        import fcntl

        name = f"run-{project}-{version}".replace("/", "_")
        thread_lock = self._locks.setdefault(name, threading.Lock())
        os.makedirs(self.lock_dir, exist_ok=True)
        with thread_lock, open(os.path.join(self.lock_dir, name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


RunStore = RedisRunStore | SQLiteRunStore
_sqlite: dict[str, SQLiteRunStore] = {}


def open_run_store(settings: Settings, connection=None) -> RunStore:
    """The run records for ``settings``: Redis with ``REDIS_URL`` (or ``connection``), else SQLite in DATA_DIR."""
    if connection is not None or settings.redis_url:
        return RedisRunStore(connection or redis_connection(settings, "the run records"), settings.queue_name)
    path = os.path.abspath(sqlite_path(settings, "runs.sqlite3"))
    if path not in _sqlite:
        _sqlite[path] = SQLiteRunStore(settings)
    return _sqlite[path]
