"""``python -m scoring worker [--schedules schedules.yaml] [--burst] [--simple]``

Runs an RQ worker on ``RQ_QUEUE`` (``settings.queue_name``) at ``REDIS_URL``.
It executes every job the project enqueues there: pre-labelling on import
(``backend.jobs.prelabel_tasks``), scoring (``scoring.jobs.score_job``),
webhook-triggered rescoring (``scoring.jobs.rescore_on_annotation``) and the
scheduled runs.  It also runs RQ's scheduler, which enqueues delayed
(debounced) and retried jobs when they are due.

With ``--schedules`` the cron schedule of that file (see ``scoring.schedule``)
runs in a child process next to the worker, and stops with it.  With
``--burst`` the worker runs the jobs that are due now and exits (the cron
schedule then gets one pass: interval schedules fire once, cron ones only if
due).  ``--simple`` runs jobs in the worker process instead of a forked child
(for debugging).  Stop it with Ctrl+C (finishes the current job) or SIGTERM.
"""
from __future__ import annotations

import logging
import multiprocessing

from core.settings import Settings
from core.stores import redis_connection

HELP = "run the RQ worker that executes scoring and pre-labelling jobs (and the cron schedule)"
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--schedules", metavar="schedules.yaml", default=None,
                        help="also run the recurring scoring runs defined in this file")
    parser.add_argument("--burst", action="store_true", help="run the jobs that are due, then exit")
    parser.add_argument("--simple", action="store_true", help="run jobs inside the worker process (no fork)")


def _run_cron(settings: Settings, path: str) -> None:  # the child process (spawned: nothing is inherited)
    from core.secrets import install_log_filter
    from scoring.schedule import build_cron

    install_log_filter(settings)
    build_cron(settings, path).start()


def run(args, settings: Settings) -> int:
    """Run the worker until stopped (or until the queue is empty with ``--burst``); returns 0."""
    from rq import Queue, SimpleWorker, Worker

    from scoring.schedule import build_cron, load_schedules

    connection = redis_connection(settings, "the worker")
    queue = Queue(settings.queue_name, connection=connection)
    cron_process = None
    if args.schedules:
        schedules = load_schedules(args.schedules)  # validate before starting anything
        if args.burst:
            cron = build_cron(settings, args.schedules, connection)
            fired = cron.enqueue_jobs()
            log.info("cron: %d of %d schedules due now", len(fired), len(schedules))
        else:
            # a spawned (not forked) child: its own interpreter and Redis connection
            cron_process = multiprocessing.get_context("spawn").Process(
                target=_run_cron, args=(settings, args.schedules), name="scoring-cron", daemon=True)
            cron_process.start()
            log.info("cron scheduler started (pid %s) with %d schedules from %s",
                     cron_process.pid, len(schedules), args.schedules)
    worker_class = SimpleWorker if args.simple else Worker
    worker = worker_class([queue], connection=connection)
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        if cron_process is not None and cron_process.is_alive():
            cron_process.terminate()
            cron_process.join(10)
    return 0
