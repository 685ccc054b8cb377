"""Queue mode of ``python -m scoring run`` (with ``REDIS_URL``): the run as chunk jobs on the RQ queue.

After the plan (:class:`scoring.runs.Runner`), the estimate's sample answers are queued for writing
here (chunk 0), the other tasks are cut into chunks of ``--chunk`` and enqueued as
``backend.runwork.run_chunk`` jobs with deterministic ids ``<run id>-<n>`` (retried by RQ; a
chunk that runs again skips what it wrote).  Any number of ``python -m scoring worker`` processes,
on any machine that reaches Redis and Label Studio, share them.  The command then follows the
run record (:mod:`backend.runstore`) with a progress bar until every chunk is done and every
prediction written (its own write loop, :mod:`backend.runwrites`, helps the workers'); Ctrl-C
detaches (the run goes on), ``--detach`` returns at once.  ``python -m scoring runs --project ID``
lists runs and their progress afterwards.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, cast

from backend.runstore import RedisRunStore
from backend.runwork import counts, queue_item, split
from scoring.runs import Runner, RunPlan, new_totals

POLL_S = 0.5


def submit(runner: Runner, plan: RunPlan, queue) -> int:
    """Record the run, enqueue its chunks, queue the sample's answers for writing; returns the number of
    chunks."""
    runner.totals = new_totals(plan)
    rest = runner.rest(plan)   # with their data: the chunk jobs need not list them again
    chunks = split(runner.run_id, runner.options.project, runner.version.id, rest, size=runner.options.chunk,
                   use_cache=runner.options.use_cache)
    for c in chunks:
        c.n += 1   # chunk 0 is the estimate's sample, written here
    meta = {"project": runner.options.project, "version": runner.version.id, "source": "run",
            "tasks": runner.options.tasks, "selected": plan.selected, "skipped_before": plan.skipped_existing,
            "estimate_usd": plan.estimate.usd, "run_id": runner.run_id}
    runner.store.create(runner.run_id, dict(meta, chunks=len(chunks) + 1, created=time.time(), mode="queue"))
    if not chunks:   # the sample was the whole run: write it here (no chunk job will come to import it)
        runner._write(plan.sample, runner.totals, 0)
        return 1
    queue.enqueue_chunks(chunks)
    queue_sample(runner, plan)
    return len(chunks) + 1


def queue_sample(runner: Runner, plan: RunPlan) -> None:
    """Chunk 0, the estimate's sample (already predicted): its predictions join the write queue, as
    every chunk job's do (:func:`backend.runwork.predict_and_queue`), and the write loops import them."""
    items = [i for o in plan.sample if (i := queue_item(runner.predictor, o, runner.version.id)) is not None]
    store = cast(RedisRunStore, runner.store)   # queue mode: REDIS_URL is set, so the run records are in Redis
    store.push_writes(str(runner.options.project), runner.version.id, runner.run_id, items)
    runner.store.chunk_done(runner.run_id, 0, dict(counts(plan.sample, runner.price), tasks=len(plan.sample),
                                                   predicted=0, skipped_existing=0))


def failed_chunks(queue, run_id: str, n_chunks: int) -> int:
    """How many of the run's chunk jobs failed for good (retries used up)."""
    from rq.job import Job

    ids = [f"{run_id}-{n}" for n in range(1, n_chunks)]
    return sum(1 for j in Job.fetch_many(ids, connection=queue.connection) if j is not None and j.is_failed)


def follow(store, run_id: str, queue, progress: Callable[[dict], None] | None = None) -> dict:
    """Poll the run record until every chunk is done (or the rest failed); returns the record."""
    while True:
        record = store.get(run_id) or {}
        if progress is not None:
            progress(record)
        if record.get("status") == "finished":
            return record
        left = int(record.get("chunks") or 0) - int(record.get("chunks_done") or 0)
        failed = failed_chunks(queue, run_id, int(record.get("chunks") or 0))
        if left and failed >= left:
            store.set_status(run_id, "failed")
            return dict(record, status="failed", failed_chunks=failed)
        time.sleep(POLL_S)


def bar(record: dict, selected: int, width: int = 30) -> str:
    """One progress line.

    >>> bar({"tasks": 5, "skipped_before": 0, "chunks_done": 1, "chunks": 2, "provider_calls": 5, "usd": 0.01}, 10)
    '[###############...............]  5/10 tasks, 1/2 chunks, 5 call(s), $0.0100'
    """
    from scoring.runs import usd_text

    done = int(record.get("tasks") or 0) + int(record.get("skipped_before") or 0)
    filled = int(width * done / selected) if selected else width
    return (f"[{'#' * filled}{'.' * (width - filled)}]  {done}/{selected} tasks, "
            f"{record.get('chunks_done', 0)}/{record.get('chunks', 0)} chunks, "
            f"{record.get('provider_calls', 0)} call(s), {usd_text(record.get('usd'))}")


def result_of(runner: Runner, plan: RunPlan, record: dict) -> dict:
    """The ``--json`` document of a queued run, from its record (same keys as in-process, plus status)."""
    return {"run_id": runner.run_id, "project": runner.options.project, "version": runner.version.id,
            "tasks_selected": plan.selected, "predicted": record.get("predicted", 0),
            "skipped_existing": plan.skipped_existing + record.get("skipped_existing", 0),
            "failed": dict(record.get("failed") or {}, **({"not_in_project": plan.not_found} if plan.not_found
                                                          else {})),
            "cached": record.get("cached", 0), "provider_calls": record.get("provider_calls", 0),
            "usd": record.get("usd"), "input_tokens": record.get("input_tokens", 0),
            "output_tokens": record.get("output_tokens", 0), "estimate": plan.estimate.as_dict(),
            "mode": "queue", "status": record.get("status", "running")}


def run_queued(runner: Runner, plan: RunPlan, *, detach: bool = False) -> dict:
    """Queue the run; follow it (Ctrl-C detaches) unless ``detach``; returns the ``--json`` document."""
    from backend.jobs import JobQueue
    from backend.runwrites import start_write_loop
    from core.stores import redis_connection

    queue = JobQueue(runner.settings, connection=redis_connection(runner.settings, "the run queue"))
    n_chunks = submit(runner, plan, queue)
    where = f"`python -m scoring runs --project {runner.options.project}`"
    print(f"run {runner.run_id}: {n_chunks - 1} chunk job(s) queued on {queue.queue.name!r} "
          f"(workers: `python -m scoring worker`); progress: {where}", flush=True)
    if detach:
        return result_of(runner, plan, runner.store.get(runner.run_id) or {})

    def show(record: dict) -> None:
        if runner.options.progress:
            print("\r" + bar(record, plan.selected), end="", file=sys.stderr, flush=True)

    writes = start_write_loop(runner.settings)   # this process helps write the run's predictions meanwhile
    try:
        record = follow(runner.store, runner.run_id, queue.queue, show)
    except KeyboardInterrupt:
        print(f"\ndetached: run {runner.run_id} goes on in the workers; see {where}", file=sys.stderr)
        return result_of(runner, plan, runner.store.get(runner.run_id) or {})
    finally:
        if writes is not None:
            writes.stop(drain=False)
    if runner.options.progress:
        print(file=sys.stderr)
    return result_of(runner, plan, record)
