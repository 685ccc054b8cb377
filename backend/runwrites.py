"""Queue mode's writes: chunk jobs queue their predictions in Redis; write loops import them in bulk.

Label Studio 1.23.2 recounts *every task of the project* on each prediction import (``update_tasks_counters``
over the project, in the request): at 10,000 tasks (``bench/bench_ls_import.py``) an import costs 0.1-1.1 s while the
project has no predictions and about 6 s once it holds 10,000, whatever its size (1 or 1,000
predictions).  A run at scale must therefore import rarely and in big batches, and never make a
chunk job wait for one.  So, with ``REDIS_URL``:

* a chunk job (:mod:`backend.runwork`) queues each prediction the moment it is made
  (``RedisRunStore.push_writes``: a Redis list per (project, version), durable, counted in the
  run's ``pending``) and ends when it has predicted its tasks;
* a **write loop** (:class:`WriteLoop`: a process next to every ``python -m scoring worker``, and a
  thread of a ``python -m scoring run`` that follows its run) looks every ``POLL_S`` seconds and,
  holding the (project, version) write lock, imports *everything* queued in one request
  (:func:`drain`; what arrives during the import waits for the next look); while the queue grows it
  then waits ``IMPORT_PAUSE`` times as long as that import took (at least ``IMPORT_EVERY_S``), so
  Label Studio's recounts take at most a quarter of its time however big the project; once the queue
  stops growing and the run of its newest prediction has no chunk left to do (a pause between two
  pushes is not the end), it imports at once. Loops on other machines find the lock held and leave
  it;
* a chunk job that finds no write loop alive (none has beaten in ``ALIVE_S``: an RQ worker started
  some other way) drains itself before it ends.

Before importing, the writer asks Label Studio which of the tasks already have a prediction of the
version (:meth:`~core.labelstudio.LabelStudioClient.tasks_with_version`, about 0.1 s) and skips them,
so two overlapping runs, or a chunk run twice, never give a task two predictions of the version; the
tasks are noted as the run's own before the import and the queue is trimmed after it, so a writer
killed in between (SIGKILL) leaves the next one to find them written and counted as the run's.  A
run is finished when its chunks are done and none of its predictions waits (``runs`` shows how many
wait).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from core.errors import Error, LabelStudioError
from core.locks import LockBusy

log = logging.getLogger(__name__)

POLL_S = 0.5          # s between two looks of a write loop at the queued predictions
ALIVE_S = 5.0         # s a write loop's beat lasts: without one, chunk jobs write their own predictions
MAX_IMPORT = 5000     # predictions per import request at most
IMPORT_EVERY_S = 5.0   # s at least between two imports of a (project, version) while its queue grows ...
IMPORT_PAUSE = 3.0     # ... and at least 3x as long as the last one took (Label Studio recounts 1/4 of the time)
ERROR_PAUSE_S = 5.0   # s a write loop waits after a failed write (Label Studio down) before the next try


def drain(store, client, project: str, version: str, wait: float = 0.0, once: bool = False) -> int:
    """Import every queued prediction of (project, version); returns how many queue entries were handled.

    With ``wait=0`` it returns 0 at once when another writer holds the lock (that writer imports what
    is queued now too: it looks again before letting go).  With ``once`` (the paced loop) it makes one
    import of what is queued (up to ``MAX_IMPORT``) and leaves what arrived meanwhile to the loop's
    next look: importing back to back while chunks still queue would keep Label Studio recounting
    the project without a pause."""
    handled = 0
    try:
        with store.write_lock(str(project), version, wait=wait):
            while items := store.peek_writes(str(project), version, MAX_IMPORT):
                t0 = time.monotonic()
                write_items(store, client, project, version, items)
                store.note_import(str(project), version, time.monotonic() - t0)
                handled += len(items)
                if once:
                    break
    except LockBusy:
        return handled
    return handled


def write_items(store, client, project: str, version: str, items: list[dict]) -> None:
    """Write the first ``len(items)`` queued entries (the caller holds the write lock)."""
    from backend.runwork import import_present

    first: dict[int, dict] = {}
    for it in items:   # a task queued twice (a chunk that ran again, two runs) is written once
        first.setdefault(int(it["task"]), it)
    try:
        taken = client.tasks_with_version(int(project), list(first), version)
    except LabelStudioError as exc:
        if exc.status != 404:
            raise
        log.error("project %s is not in Label Studio any more: %d queued prediction(s) of %s dropped",
                  project, len(first), version)
        store.done_writes(str(project), version, len(items), _tally(items, first, set(), set(), set()))
        return
    own = store.written_by({t: first[t]["run"] for t in taken})   # noted by their run: written by a killed writer
    fresh = [it for t, it in first.items() if t not in taken]
    claims = _by_run(fresh)
    store.claim_written(claims)
    try:
        written = {p["task"] for p in import_present(client, int(project), [dict(it["pred"]) for it in fresh])}
    except BaseException:
        store.claim_written(claims, claim=False)
        raise
    lost = {run: [t for t in tasks if t not in written] for run, tasks in claims.items()}
    store.claim_written(lost, claim=False)   # left the project meanwhile
    store.done_writes(str(project), version, len(items), _tally(items, first, written, taken, own))
    store.unmark(str(project), version, list(first))
    log.info("project %s, %s: %d prediction(s) written, %d skipped (had one)", project, version, len(written),
             len(taken) - len(own))


def _tally(items: list[dict], first: dict[int, dict], written: set, taken: set, own: set) -> dict[str, dict]:
    """Per run: queue entries handled, tasks that got an answer written, tasks skipped (another run's
    prediction came first), tasks dropped (not in the project any more)."""
    per_run: dict[str, dict] = defaultdict(lambda: {"entries": 0, "ok": [], "skipped": [], "dropped": 0})
    for it in items:
        per_run[it["run"]]["entries"] += 1
    for t, it in first.items():
        if t in written and it.get("ok"):
            per_run[it["run"]]["ok"].append(t)
        elif t in taken and t not in own:
            per_run[it["run"]]["skipped"].append(t)
        elif t not in taken and t not in written:
            per_run[it["run"]]["dropped"] += 1
    for run, tasks in _others(items, first).items():   # the same task queued by another run too
        for t in tasks:
            if t in written or t in taken:
                per_run[run]["skipped"].append(t)
            else:
                per_run[run]["dropped"] += 1
    return dict(per_run)


def _others(items: list[dict], first: dict[int, dict]) -> dict[str, set[int]]:
    """Per run, the tasks it queued that another run's entry in ``items`` came first for."""
    out: dict[str, set[int]] = defaultdict(set)
    for it in items:
        t = int(it["task"])
        if it["run"] != first[t]["run"]:
            out[it["run"]].add(t)
    return dict(out)


def _by_run(items: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for it in items:
        out[it["run"]].append(int(it["task"]))
    return dict(out)


class WriteLoop:
    """A thread that writes every run's queued predictions (see the module docstring).

    ``start()`` it beside a worker; ``stop()`` ends it and, with ``drain=True``, writes whatever is
    still queued before returning (a ``--burst`` worker, a followed run that ends)."""

    def __init__(self, store, client, poll: float = POLL_S):
        self.store, self.client, self.poll = store, client, poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[tuple[str, str], int] = {}

    def start(self) -> "WriteLoop":
        self._thread = threading.Thread(target=self._run, name="prediction-writes", daemon=True)
        self._thread.start()
        return self

    def once(self, wait: float = 0.0, paced: bool = False) -> int:
        """One look: drain every (project, version) with queued predictions; returns entries handled.

        ``paced`` (the loop): while a queue is still growing, wait after an import ``IMPORT_PAUSE`` times
        as long as it took, and at least ``IMPORT_EVERY_S`` seconds (each import costs Label Studio a
        recount of the project, which grows with it: its imports then take at most a quarter of the
        time); once the queue stops growing and no chunk of the newest entry's run is left, import at once."""
        handled = 0
        for project, version in self.store.write_keys():
            if paced:
                queued = self.store.queued_writes(project, version)
                growing = queued > self._seen.get((project, version), 0)
                self._seen[(project, version)] = queued
                at, took = self.store.last_import(project, version)
                if not queued or ((growing or self.store.more_coming(project, version)) and queued < MAX_IMPORT
                                  and time.time() - at < max(IMPORT_EVERY_S, IMPORT_PAUSE * took)):
                    continue
            handled += drain(self.store, self.client, project, version, wait=wait, once=paced)
            self._seen[(project, version)] = self.store.queued_writes(project, version) if paced else 0
        return handled

    def _run(self) -> None:
        from redis.exceptions import RedisError

        failing = False
        while not self._stop.is_set():
            pause = self.poll
            try:
                self.store.writer_beat(ALIVE_S)
                self.once(paced=True)
                if failing:
                    log.info("queued predictions are being written again")
                failing = False
            except (Error, RedisError, OSError) as exc:   # Label Studio or Redis down: one line, then quiet
                if not failing:
                    log.warning("writing queued predictions failed (%s: %s); trying again every %g s",
                                type(exc).__name__, exc, ERROR_PAUSE_S)
                failing, pause = True, ERROR_PAUSE_S
            except Exception:
                log.exception("writing queued predictions failed; trying again in %g s", ERROR_PAUSE_S)
                pause = ERROR_PAUSE_S
            self._stop.wait(pause)

    def stop(self, drain: bool = True, wait: float = 300.0) -> None:
        """End the loop; with ``drain`` write what is still queued first (waiting up to ``wait`` s for
        another writer).  A failure is logged: what is queued stays queued for the next loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=wait)
        if drain:
            try:
                self.once(wait=wait)
            except Exception as exc:
                log.warning("queued predictions left for the next write loop: %s: %s", type(exc).__name__, exc)


    @classmethod
    def for_settings(cls, settings) -> "WriteLoop":
        """A (not started) loop over the run records and the Label Studio of ``settings``."""
        from backend.runstore import open_run_store
        from core.labelstudio import LabelStudioClient

        return cls(open_run_store(settings), LabelStudioClient(settings))


def start_write_loop(settings) -> WriteLoop | None:
    """A started :class:`WriteLoop` for ``settings`` (queue mode), or None without ``REDIS_URL`` or Label Studio."""
    if not settings.redis_url or not settings.label_studio_url or not settings.label_studio_api_key:
        return None
    return WriteLoop.for_settings(settings).start()
