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

A child process next to the worker writes the predictions that runs' chunk jobs queue
(``backend.runwrites.WriteLoop``: few, big imports into Label Studio while the jobs go on
predicting); it writes what is still queued when the worker stops (up to ``STOP_DRAIN_S``; the
rest stays queued for another worker).  A ``--burst`` worker writes what is queued before it exits.

Label Studio is checked at start: every job this worker runs talks to it (scoring reads and
writes the project, pre-labelling writes predictions).  Without ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY`` a worker with ``--schedules`` refuses to start (one line, exit 2:
each scheduled run would fail); a plain worker starts with a one-line warning (it may serve
jobs of other kinds, and a misconfigured job still fails at once with the same message).

It outlives a Redis outage (every process waits, logging one line per back-off
step, and carries on when Redis answers again) and repairs what a killed worker
left behind within about ``4/3 * WORKER_DEAD_AFTER`` seconds: see ``scoring.worker``.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing

from core.errors import ConfigError
from core.settings import Settings

HELP = "run the RQ worker that executes scoring and pre-labelling jobs (and the cron schedule)"
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--schedules", metavar="schedules.yaml", default=None,
                        help="also run the recurring scoring runs defined in this file")
    parser.add_argument("--burst", action="store_true", help="run the jobs that are due, then exit")
    parser.add_argument("--simple", action="store_true", help="run jobs inside the worker process (no fork)")


def _run_cron(settings: Settings, path: str) -> None:  # the child process (spawned: nothing is inherited)
    from redis.exceptions import RedisError
    from rq.exceptions import StopRequested

    from core.secrets import install_log_filter
    from scoring.schedule import build_cron
    from scoring.worker import waiting_connection

    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter(settings)
    try:
        build_cron(settings, path, waiting_connection(settings, "the cron schedule")).start()
    except (RedisError, StopRequested) as exc:  # asked to stop while Redis was unreachable (or starting up)
        log.warning("cron schedule stopped while Redis was unreachable (%s)", str(exc) or type(exc).__name__)


def _run_writes(settings: Settings) -> None:  # the child process (spawned: no thread of the worker is forked)
    import signal
    import threading

    from backend.runwrites import start_write_loop
    from core.secrets import install_log_filter

    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loop = start_write_loop(settings)
    if loop is None:
        return
    stop.wait()
    loop.stop(drain=True, wait=STOP_DRAIN_S)


def missing_label_studio(settings: Settings) -> str | None:
    """What is missing to reach Label Studio, or None.

    >>> missing_label_studio(Settings(label_studio_url="http://ls:8080", label_studio_api_key=None))
    'LABEL_STUDIO_API_KEY'
    """
    missing = [name for name, value in (("LABEL_STUDIO_URL", settings.label_studio_url),
                                        ("LABEL_STUDIO_API_KEY", settings.label_studio_api_key)) if not value]
    return " and ".join(missing) or None


def check_label_studio(settings: Settings, schedules: str | None) -> None:
    """Refuse to run ``schedules`` without Label Studio settings; warn once for a plain worker."""
    missing = missing_label_studio(settings)
    if missing is None:
        return
    if schedules:
        raise ConfigError(f"the scheduled scoring runs of {schedules} need {missing} in the worker's environment "
                          "(e.g. LABEL_STUDIO_URL=http://localhost:8080, LABEL_STUDIO_API_KEY=<Account & Settings → "
                          "Access Token>)")
    log.warning("%s not set: scoring and pre-labelling jobs will fail until the worker is restarted with it", missing)


STOP_DRAIN_S = 8.0    # s a stopping worker's write process spends at most writing what is queued (the rest stays)


def run(args, settings: Settings) -> int:
    """Run the worker until stopped (or until the queue is empty with ``--burst``); returns 0."""
    check_label_studio(settings, args.schedules)
    from redis.exceptions import RedisError
    from rq import Queue

    from scoring.schedule import build_cron, load_schedules
    from scoring.worker import make_worker, waiting_connection

    connection = waiting_connection(settings, "the worker")
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
    worker = make_worker(settings, [queue], connection, simple=args.simple)
    writes = None
    if not args.burst and missing_label_studio(settings) is None:
        # imports the predictions that runs' chunk jobs queue (backend.runwrites); a spawned child, like cron's
        writes = multiprocessing.get_context("spawn").Process(
            target=_run_writes, args=(settings,), name="prediction-writes", daemon=True)
        writes.start()
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    except RedisError as exc:  # asked to stop while Redis was unreachable: nothing more to record
        log.warning("worker stopped while Redis was unreachable (%s)", exc)
        if worker.horse_pid:
            worker.kill_horse()
            worker.wait_for_horse()
    finally:
        _stop(cron_process)
        _stop(writes)
        if args.burst and missing_label_studio(settings) is None:   # what the jobs queued and left
            from backend.runwrites import WriteLoop

            with contextlib.suppress(Exception):
                WriteLoop.for_settings(settings).stop(drain=True, wait=STOP_DRAIN_S)
    return 0


def _stop(process) -> None:
    """Stop the cron child: SIGTERM, then SIGKILL if it has not ended within 10 s."""
    if process is None or not process.is_alive():
        return
    process.terminate()
    process.join(10)
    if process.is_alive():
        log.warning("the cron scheduler (pid %s) did not stop within 10 s; killing it", process.pid)
        process.kill()
        process.join(5)
