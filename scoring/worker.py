"""How the scoring worker outlives a Redis outage and recovers quickly from a killed worker.

Used by ``python -m scoring worker`` (``scoring.commands.worker``).

Redis outage
------------
Every Redis connection of the worker process tree -- the work loop and its pub/sub
thread, RQ's scheduler (a forked child), the jobs' own queue calls and locks, the
cron child -- is opened by :func:`waiting_connection`, whose redis-py retry policy
is :class:`RedisWait`: a command that cannot reach Redis is tried again, forever,
at once, then after 1, 2, 4, 8, 16, then every :data:`WAIT_CAP` (30) seconds.  Each process logs one
line per back-off step and one line when Redis answers again; no exception reaches
RQ's loops, so nothing quits and every process carries on where it was.  A stop
request (SIGTERM, Ctrl+C) ends the waiting: the command then fails at once and the
worker exits.  (The usage ledger and run history open their own connections and
have their own outage handling.)

A killed worker
---------------
RQ repairs what a dead worker leaves behind in its *maintenance pass*: a job whose
execution heartbeat has expired is retried (if it has retries left; else it fails
with ``AbandonedJobError``), and a scheduler lock whose holder is gone is taken by
the next worker that tries.  With RQ's defaults this takes up to ten minutes (pass
every 600 s, heartbeat TTL 90 s, scheduler lock 61 s, idle workers block 405 s on the
queue).  :class:`Recovery` derives RQ's knobs from one setting, ``WORKER_DEAD_AFTER``
(``settings.worker_dead_after``, default 30 s): the worker heartbeats a running job
every third of it, a job whose heartbeat is older than it counts as abandoned, the
maintenance pass runs every third of it, and a scheduler lock not refreshed for that
long (RQ refreshes it every second) is taken over.  A job abandoned by a killed
worker is thus retried, and a job scheduled meanwhile (a debounced rescore, a retry)
enqueued, within about ``4/3 * WORKER_DEAD_AFTER`` seconds (40 s by default) of the
kill, by any worker still running or the restarted one.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler

from core.settings import Settings
from core.stores import redis_connection

log = logging.getLogger(__name__)

WAIT_CAP = 30.0          # s: the longest pause between two tries to reach Redis
SCHEDULER_LOCK_TTL = 61  # s: RQ sets its scheduler lock to `interval + 60` (interval 1 s) and refreshes it each second
WAITED_ERRORS = (RedisConnectionError, RedisTimeoutError, socket.timeout)  # what redis-py's own policy retries
STOP_GRACE = 10.0        # s: how long a stopping worker waits for its scheduler process before killing it

# delete the scheduler lock KEYS[1] if it has not been refreshed for a while (its TTL is below ARGV[1] ms);
# returns the holder's name, or false.  One script, so a holder refreshing meanwhile keeps its lock.
TAKE_OVER_STALE_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return holder
end
return false
"""


# --------------------------------------------------------------------------- waiting out a Redis outage
class RedisWait(Retry):
    """redis-py retry policy: retry connection errors and timeouts forever, backing off up to ``cap`` s.

    One instance serves one process's connection pool (its connections and
    threads share it; a forked child gets its own copy).  ``where`` names the
    server in the log lines (never the URL: it may hold a password), ``what``
    the process that waits.  :meth:`stop` ends every wait at once: the command
    then raises its error.
    """

    def __init__(self, what: str, where: str, cap: float = WAIT_CAP):
        super().__init__(NoBackoff(), -1, WAITED_ERRORS)
        self.what, self.where, self.cap = what, where, cap
        self.stopping = threading.Event()
        self._down_since: float | None = None
        self._pid = os.getpid()
        self._quiet_until = 0.0

    @staticmethod
    def delay(failures: int, cap: float = WAIT_CAP) -> float:
        """Seconds to wait after the ``failures``-th failure in a row: none after the first (a connection
        that Redis closed while idle, or the first sign of an outage: the command is sent again on a new
        connection at once), then 1, 2, 4 ... up to ``cap``.

        >>> [RedisWait.delay(n) for n in range(1, 9)]
        [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
        """
        return 0.0 if failures <= 1 else float(min(cap, 2 ** min(failures - 2, 16)))

    def stop(self) -> None:
        """Stop waiting: commands waiting for Redis, and later ones, raise their error at once."""
        self.stopping.set()

    @property
    def waiting(self) -> bool:
        """True while this process finds Redis unreachable (from the first logged wait until it answers)."""
        return self._down_since is not None

    def call_with_retry(self, do: Callable[[], Any], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> Any:
        """``do()``; on a connection error or timeout call ``fail``, wait (see :meth:`delay`) and try again."""
        failures = 0
        while True:
            try:
                result = do()
            except WAITED_ERRORS as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                pause = self.delay(failures, self.cap)
                if pause:   # the first retry, at once, is also made when stopping; waiting is not
                    if self.stopping.is_set():
                        raise
                    self._report(error, pause)
                    self.stopping.wait(pause)
                    if self.stopping.is_set():
                        raise
            else:
                if failures and self._down_since is not None:
                    log.warning("Redis at %s answers again after %.0f s; %s carries on", self.where,
                                time.monotonic() - self._down_since, self._who())
                    self._down_since = None
                return result

    def _report(self, error: Exception, pause: float) -> None:
        """One line per back-off step for the whole process (several threads may be waiting)."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since, self._quiet_until = now, 0.0
        if now >= self._quiet_until:
            self._quiet_until = now + pause * 0.9
            log.warning("Redis at %s is unreachable (%s); %s waits, next try in %.0f s (down for %.0f s)",
                        self.where, str(error).rstrip(".") or type(error).__name__, self._who(), pause,
                        now - self._down_since)

    def _who(self) -> str:
        """``what``, or for a child process forked with this policy, which child (RQ's scheduler, a job)."""
        if os.getpid() == self._pid:
            return self.what
        child = "scheduler" if multiprocessing.current_process().name == "Scheduler" else "job"
        return f"{self.what}'s {child} (pid {os.getpid()})"

    def __deepcopy__(self, memo) -> "RedisWait":
        return self  # redis-py copies the policy into each connection: they all share this one (and its stop)

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def redis_address(url: str | None) -> str:
    """``host:port`` of a Redis URL, for log lines (the URL itself may carry a password).

    >>> redis_address("redis://:secret@redis:6379/0"), redis_address("unix:///run/redis.sock")
    ('redis:6379', '/run/redis.sock')
    """
    parts = urlsplit(url or "")
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or 6379}"
    return parts.path or "?"


def waiting_connection(settings: Settings, what: str):
    """A Redis connection to ``REDIS_URL`` that waits out outages (:class:`RedisWait`); ``what`` names its user."""
    connection = redis_connection(settings, what)
    connection.set_retry(RedisWait(what, redis_address(settings.redis_url)))
    return connection


def stop_waiting(connection) -> bool:
    """End the waiting of ``connection`` (if it is a :func:`waiting_connection`): used on a stop request.

    Returns True if Redis was unreachable at that moment."""
    retry = connection.get_retry() if connection is not None else None
    if not isinstance(retry, RedisWait):
        return False
    retry.stop()
    return retry.waiting


# --------------------------------------------------------------------------- recovering from a killed worker
@dataclass(frozen=True)
class Recovery:
    """RQ's recovery knobs, derived from ``WORKER_DEAD_AFTER`` (seconds, at least 3).

    >>> r = Recovery(30)
    >>> r.heartbeat, r.maintenance, r.worker_ttl, r.stale_lock_ms
    (10, 10, 25, 31000)
    """

    dead_after: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> "Recovery":
        return cls(max(3, int(round(settings.worker_dead_after))))

    @property
    def heartbeat(self) -> int:
        """s between two heartbeats of a running job (RQ's ``job_monitoring_interval``)."""
        return max(1, self.dead_after // 3)

    @property
    def maintenance(self) -> int:
        """s between two maintenance passes (RQ's ``maintenance_interval``)."""
        return max(1, self.dead_after // 3)

    @property
    def worker_ttl(self) -> int:
        """RQ's ``worker_ttl``: an idle worker blocks on the queue ``worker_ttl - 15`` s at a time, and only
        runs its maintenance pass between two waits, so the wait must not exceed the pass's interval."""
        return self.maintenance + 15

    @property
    def stale_lock_ms(self) -> int:
        """A scheduler lock whose TTL is below this (ms) has not been refreshed for ``dead_after`` s."""
        return (SCHEDULER_LOCK_TTL - self.dead_after) * 1000


class _Recovering:
    """Mixin for RQ worker classes: :class:`Recovery` timings, stale scheduler locks taken over,
    a bounded wait for the scheduler process on stop, and no waiting for Redis once asked to stop."""

    recovery: Recovery

    def __init__(self, queues, *args, recovery: Recovery | None = None, **kwargs):
        self.recovery = recovery or Recovery()
        kwargs.setdefault("maintenance_interval", self.recovery.maintenance)
        kwargs.setdefault("job_monitoring_interval", self.recovery.heartbeat)
        kwargs.setdefault("worker_ttl", self.recovery.worker_ttl)
        super().__init__(queues, *args, **kwargs)  # type: ignore[call-arg]

    def take_over_stale_scheduler(self) -> list[str]:
        """Delete the scheduler locks of this worker's queues whose holder has stopped refreshing them
        (a killed worker's scheduler), so this worker's scheduler can take them; returns those queues."""
        script = self.connection.register_script(TAKE_OVER_STALE_LOCK)  # type: ignore[attr-defined]
        taken = []
        for name in self.queue_names():  # type: ignore[attr-defined]
            holder = script(keys=[RQScheduler.get_locking_key(name)], args=[self.recovery.stale_lock_ms])
            if holder:
                holder = holder.decode() if isinstance(holder, bytes) else holder
                log.warning("queue %s: the scheduler %s has not renewed its lock for over %d s (its worker is "
                            "gone); this worker takes over", name, holder, self.recovery.dead_after)
                taken.append(name)
        return taken

    def _start_scheduler(self, *args, **kwargs):
        self.take_over_stale_scheduler()
        return super()._start_scheduler(*args, **kwargs)  # type: ignore[misc]

    def run_maintenance_tasks(self):
        scheduler = self.scheduler  # type: ignore[attr-defined]
        if scheduler is not None and self.last_cleaned_at and not (  # type: ignore[attr-defined]
                scheduler._process is not None and scheduler._process.is_alive()):
            self.take_over_stale_scheduler()   # RQ then acquires the free lock and starts the scheduler
        return super().run_maintenance_tasks()  # type: ignore[misc]

    _redis_gone = False   # a stop request found Redis unreachable (request_stop)

    def request_stop(self, signum, frame):
        stop_waiting(self.connection)  # type: ignore[attr-defined]
        try:
            return super().request_stop(signum, frame)  # type: ignore[misc]
        except WAITED_ERRORS as exc:
            # Busy: RQ's warm stop notes the request in Redis, then waits for the job, which cannot report
            # its end either.  Stop now; once Redis is back, RQ's cleanup handles the job as abandoned.
            log.warning("stop requested while Redis is unreachable (%s): the running job is stopped now; RQ "
                        "treats it as abandoned once Redis is back", exc)
            # Only what is quick here, in the signal handler (RQ's SIGALRM job monitor may fire during a
            # slow step): RQ's teardown stops the scheduler after the loop ends, with the short grace.
            self._redis_gone = True
            if getattr(self, "horse_pid", 0):   # the forking worker's job process (SimpleWorker: none)
                self.kill_horse()  # type: ignore[attr-defined]
                self.wait_for_horse()  # type: ignore[attr-defined]
            raise StopRequested() from None

    def stop_scheduler(self):
        """Stop the scheduler process: SIGTERM, then SIGKILL if it has not ended after ``STOP_GRACE`` s
        (1 s while Redis is unreachable: it cannot release its lock then, and waits for Redis)."""
        process = self.scheduler._process if self.scheduler else None  # type: ignore[attr-defined]
        if process is None or not process.pid:
            return
        retry = self.connection.get_retry()  # type: ignore[attr-defined]
        unreachable = self._redis_gone or (isinstance(retry, RedisWait) and retry.waiting)
        grace = 1.0 if unreachable else STOP_GRACE
        process.terminate()
        process.join(grace)
        if process.is_alive():
            log.warning("the scheduler process %s did not stop within %.0f s; killing it", process.pid, grace)
            process.kill()
            process.join(5)


class ScoringWorker(_Recovering, Worker):
    """RQ's forking worker with :class:`Recovery` timings (jobs run in a child process, heartbeats from here)."""

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        """A running job's execution counts as abandoned ``dead_after`` s after its last heartbeat
        (RQ: ``min(job_monitoring_interval, time left) + 60``)."""
        return self.recovery.dead_after


class ScoringSimpleWorker(_Recovering, SimpleWorker):
    """``--simple``: jobs run in the worker process, which cannot heartbeat meanwhile, so (as in RQ) a job
    of a killed simple worker counts as abandoned only after its timeout + 60 s."""


def make_worker(settings: Settings, queues: list, connection, *,
                simple: bool = False) -> ScoringWorker | ScoringSimpleWorker:
    """The worker ``python -m scoring worker`` runs on ``queues``, with the recovery timings of ``settings``."""
    worker_class = ScoringSimpleWorker if simple else ScoringWorker
    return worker_class(queues, connection=connection, recovery=Recovery.from_settings(settings))
