"""The worker against real processes: a killed worker, a Redis outage (issue 8, findings 14 and 15).

Each test starts its own ``redis-server`` on a free 127.0.0.1 port (never the shared
6379) and ``python -m scoring worker`` subprocesses on it, with the default settings
(``WORKER_DEAD_AFTER`` 30 s).  The jobs are ``tests.jobs_for_tests`` (they talk to the
test through files, so they work while Redis is down).  Measured times are printed
(``pytest -s``).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Retry
from rq.job import Job
from rq.scheduler import RQScheduler

from core.errors import ConfigError
from core.settings import Settings
from demo.lsserver import free_port
from scoring.worker import SCHEDULER_LOCK_TTL, Recovery, ScoringWorker, stop_waiting, waiting_connection
from tests.jobs_for_tests import runs

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
QUEUE = "recovery-test"
RECOVERY_LIMIT = 60.0   # s: what "recovered quickly" means here

# no skip: tools/ensure_redis.sh (make test) installs redis-server; a missing one must fail the run


# --------------------------------------------------------------------------- processes

class RedisServer:
    """A private redis-server on a free port; ``persist`` keeps the data across a restart (append-only
    file in ``folder``, as docker-compose.yml runs Redis)."""

    def __init__(self, folder: Path, persist: bool = False):
        self.port, self.folder, self.persist = free_port(), folder, persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis.from_url(self.url)

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "yes" if self.persist else "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 10, "redis-server to answer")

    def _answers(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except RedisConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Workers:
    """``python -m scoring worker`` subprocesses, each in its own session (so a SIGKILL of the group
    takes its scheduler and cron children too, like a killed container); all stopped at the end."""

    def __init__(self, folder: Path, redis_url: str):
        self.folder, self.redis_url = folder, redis_url
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "REDIS_", "RQ_"))}
        env.update(REDIS_URL=self.redis_url, RQ_QUEUE=QUEUE, LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
                   # a worker with --schedules checks them at start; nothing here reaches Label Studio
                   LABEL_STUDIO_URL="http://127.0.0.1:9", LABEL_STUDIO_API_KEY="recovery-test-token")
        log = open(self.folder / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "scoring", "worker", *args], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def wait_for(predicate, timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def seconds(took: float | None) -> str:
    return "never" if took is None else f"{took:.1f} s"


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path, redis_server):
    pool = Workers(tmp_path, redis_server.url)
    yield pool
    pool.stop_all()


# --------------------------------------------------------------------------- finding 15: a killed worker
def test_killed_worker_job_is_retried_and_due_job_runs_within_a_minute(tmp_path, redis_server, workers):
    """SIGKILL a worker (and its job) mid-job, start a new one: the abandoned job is run again and a job
    that fell due meanwhile (scheduled before the kill) is enqueued by the new worker's scheduler."""
    queue = Queue(QUEUE, connection=redis_server.client())
    blocked, due = tmp_path / "blocked", tmp_path / "due"
    blocked.mkdir()
    first = workers.start("first")
    job = queue.enqueue("tests.jobs_for_tests.block", str(blocked), retry=Retry(max=2), job_timeout=600)
    wait_for(lambda: len(runs(blocked)) == 1, 60, "the first worker to start the job")
    horse = int(runs(blocked)[0].name.split("-")[1])
    scheduled = queue.enqueue_in(timedelta(seconds=3), "tests.jobs_for_tests.touch", str(due))

    os.killpg(first.pid, signal.SIGKILL)      # the worker, its scheduler: the whole container
    os.kill(horse, signal.SIGKILL)            # and the job's process (its own process group)
    killed = time.monotonic()
    first.wait(10)
    second = workers.start("second")

    retried = due_enqueued = due_run = None
    while (retried is None or due_run is None) and time.monotonic() - killed < RECOVERY_LIMIT + 30:
        if retried is None and len(runs(blocked)) >= 2:
            retried = time.monotonic() - killed
            (blocked / "release").touch()     # let the retried job end, so that the one worker is free
        if due_enqueued is None and scheduled.get_status(refresh=True) != "scheduled":
            due_enqueued = time.monotonic() - killed
        if due_run is None and due.exists():
            due_run = time.monotonic() - killed
        time.sleep(0.2)
    print(f"\nafter SIGKILL: abandoned job running again after {seconds(retried)}; job due 3 s after the kill "
          f"enqueued after {seconds(due_enqueued)} and run after {seconds(due_run)}")
    assert retried is not None and retried < RECOVERY_LIMIT, workers.log("second")[-3000:]
    assert due_run is not None and due_run < RECOVERY_LIMIT, workers.log("second")[-3000:]

    wait_for(lambda: job.get_status(refresh=True) == "finished", 30, "the retried job to finish")
    job.refresh()
    assert job.retries_left == 1 and len(runs(blocked)) == 2
    assert second.poll() is None
    assert "takes over" in workers.log("second")


# --------------------------------------------------------------------------- finding 14: Redis stopped
def _cron_ran_since(queue: Queue, since: datetime) -> bool:
    ids = queue.finished_job_registry.get_job_ids() + queue.get_job_ids()
    return any(j is not None and j.func_name == "scoring.jobs.scheduled_score" and j.enqueued_at
               and j.enqueued_at.replace(tzinfo=timezone.utc) >= since
               for j in Job.fetch_many(ids, connection=queue.connection))


def test_worker_waits_out_a_redis_outage(tmp_path):
    """Redis stops for ~20 s while a job runs (and ends): the worker, its scheduler and its cron child
    wait, log one line per back-off step and no traceback, and carry on when Redis is back."""
    server = RedisServer(tmp_path, persist=True)
    server.start()
    pool = Workers(tmp_path, server.url)
    try:
        _outage(tmp_path, server, pool)
    finally:
        pool.stop_all()
        server.stop()


def _outage(tmp_path: Path, server: RedisServer, pool: Workers) -> None:
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("schedules:\n  - {project: outage, version: v1, interval: 5}\n")
    blocked, new, delayed = tmp_path / "blocked", tmp_path / "new", tmp_path / "delayed"
    blocked.mkdir()
    worker = pool.start("worker", "--schedules", str(schedules))
    running = Queue(QUEUE, connection=server.client()).enqueue("tests.jobs_for_tests.block", str(blocked))
    wait_for(lambda: len(runs(blocked)) == 1, 60, "the worker to start the job")

    server.stop()
    stopped = time.monotonic()
    time.sleep(3)
    (blocked / "release").touch()             # the job ends while Redis is down
    while time.monotonic() - stopped < 20:
        assert worker.poll() is None, pool.log("worker")[-3000:]
        time.sleep(1)
    server.start()
    back, back_at = time.monotonic(), datetime.now(timezone.utc)

    queue = Queue(QUEUE, connection=server.client())
    queue.enqueue("tests.jobs_for_tests.touch", str(new))
    queue.enqueue_in(timedelta(seconds=2), "tests.jobs_for_tests.touch", str(delayed))
    took_new = wait_for(new.exists, RECOVERY_LIMIT, "a job enqueued after the outage to run")
    took_delayed = wait_for(delayed.exists, RECOVERY_LIMIT, "a delayed job (RQ's scheduler) to run")
    wait_for(lambda: running.get_status(refresh=True) == "finished", 30, "the job that ended meanwhile")
    wait_for(lambda: _cron_ran_since(queue, back_at), RECOVERY_LIMIT, "the cron schedule to fire again")
    took_cron = time.monotonic() - back
    assert worker.poll() is None

    log = pool.log("worker")
    waits = [line for line in log.splitlines() if "is unreachable" in line]
    print(f"\nafter Redis came back: new job run in {took_new:.1f} s, delayed job after {took_delayed:.1f} s "
          f"more, cron fired {took_cron:.1f} s after; {len(waits)} waiting lines:\n" + "\n".join(waits))
    for sign in ("unhandled exception", "raised an exception", "redis.exceptions.ConnectionError", "quitting"):
        assert sign not in log, log[-4000:]
    for who in ("the worker waits", "the worker's scheduler", "the cron schedule waits"):
        assert any(who in line for line in waits), who
    assert len(waits) <= 24          # one line per back-off step (0+1+2+4+8+16 s) and process
    assert "answers again" in log


def test_worker_stops_promptly_during_an_outage(tmp_path, redis_server, workers):
    """SIGTERM while Redis is unreachable: the worker, its scheduler and cron child stop waiting and exit."""
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("schedules:\n  - {project: stopping, version: v1, interval: 3600}\n")
    worker = workers.start("stopping", "--schedules", str(schedules))
    wait_for(lambda: "Listening on" in workers.log("stopping"), 60, "the worker to start")
    redis_server.stop()
    wait_for(lambda: "is unreachable" in workers.log("stopping"), 30, "the worker to notice")
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(20)
    took = time.monotonic() - asked
    print(f"\nstopped {took:.1f} s after SIGTERM during an outage")
    assert worker.returncode == 0 and took < 8      # docker stop waits 10 s before SIGKILL
    log = workers.log("stopping")
    assert "worker stopped while Redis was unreachable" in log, log
    assert "cron schedule stopped while Redis was unreachable" in log, log
    assert "Traceback" not in log, log


def test_a_busy_worker_stops_promptly_during_an_outage(tmp_path, redis_server, workers):
    """SIGTERM while a job runs and Redis has just gone (the worker has not noticed yet): RQ's warm stop
    would note the request in Redis (which fails, with a traceback) and then wait for the job; the
    worker stops the job and exits at once instead."""
    queue = Queue(QUEUE, connection=redis_server.client())
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    worker = workers.start("busy")
    queue.enqueue("tests.jobs_for_tests.block", str(blocked), job_timeout=600)
    wait_for(lambda: len(runs(blocked)) == 1, 60, "the worker to start the job")
    horse = int(runs(blocked)[0].name.split("-")[1])
    redis_server.stop()
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 20 s after SIGTERM:\n{workers.log('busy')}") from None
    took = time.monotonic() - asked
    print(f"\nstopped {took:.1f} s after SIGTERM with a job running, Redis gone")
    log = workers.log("busy")
    assert worker.returncode == 0 and took < 8, log
    assert "stop requested while Redis is unreachable" in log and "Traceback" not in log, log
    with pytest.raises(ProcessLookupError):   # the job's process went with the worker
        os.kill(horse, 0)


# --------------------------------------------------------------------------- the parts
def test_stale_scheduler_lock_is_taken_over_and_a_live_one_is_not(redis_server):
    conn = redis_server.client()
    scheduler = RQScheduler(["live"], connection=conn)
    scheduler.acquire_locks()                                    # how RQ sets its lock
    assert SCHEDULER_LOCK_TTL - 1 <= conn.ttl(RQScheduler.get_locking_key("live")) <= SCHEDULER_LOCK_TTL
    conn.set(RQScheduler.get_locking_key("dead"), "gone", ex=SCHEDULER_LOCK_TTL - 31)  # silent for 31 s
    conn.set(RQScheduler.get_locking_key("forever"), "odd")                              # no TTL at all
    worker = ScoringWorker(["live", "dead", "forever"], connection=conn, recovery=Recovery(30))
    assert sorted(worker.take_over_stale_scheduler()) == ["dead", "forever"]
    assert conn.get(RQScheduler.get_locking_key("live")) == scheduler.name.encode()
    assert not conn.exists(RQScheduler.get_locking_key("dead"), RQScheduler.get_locking_key("forever"))


def test_worker_uses_the_recovery_timings(redis_server):
    worker = ScoringWorker(["q"], connection=redis_server.client(), recovery=Recovery(12))
    assert (worker.job_monitoring_interval, worker.maintenance_interval, worker.dequeue_timeout) == (4, 4, 4)
    assert worker.get_heartbeat_ttl(Job.create("tests.jobs_for_tests.touch", connection=worker.connection)) == 12


def test_waiting_connection_waits_with_back_off_until_stopped(caplog):
    port = free_port()
    settings = Settings(redis_url=f"redis://:secret@127.0.0.1:{port}/0")   # nothing listens there
    connection = waiting_connection(settings, "the test")
    outcome: list = []

    def ping():
        try:
            outcome.append(connection.ping())
        except RedisConnectionError as exc:
            outcome.append(exc)

    caplog.set_level(logging.WARNING, logger="scoring.worker")
    thread = threading.Thread(target=ping, daemon=True)
    thread.start()
    time.sleep(2.5)
    assert thread.is_alive() and not outcome                      # still waiting: nothing raised
    stop_waiting(connection)
    thread.join(2)
    assert not thread.is_alive() and isinstance(outcome[0], RedisConnectionError)
    lines = [r.getMessage() for r in caplog.records if "is unreachable" in r.getMessage()]
    assert [line.split("next try in ")[1].split()[0] for line in lines] == ["1", "2"], lines
    assert all(f"Redis at 127.0.0.1:{port} is unreachable" in line and "the test waits" in line for line in lines)
    assert not any("secret" in line for line in lines)


def test_worker_dead_after_setting():
    assert Settings.from_env({}).worker_dead_after == 30
    assert Recovery.from_settings(Settings.from_env({"WORKER_DEAD_AFTER": "12"})) == Recovery(12)
    assert Recovery.from_settings(Settings.from_env({"WORKER_DEAD_AFTER": "1"})) == Recovery(3)
    for bad in ("0", "soon"):
        with pytest.raises(ConfigError, match="WORKER_DEAD_AFTER"):
            Settings.from_env({"WORKER_DEAD_AFTER": bad})
