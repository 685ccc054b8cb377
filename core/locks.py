"""Locks that keep two runs of the same piece of work apart, across processes and hosts.

A scoring run that writes back into Label Studio must never overlap an identical
one (same project, version and reference): both would read the same predictions,
both would create the evaluation, both would record a run.  Whoever writes back
takes the lock first -- the worker's ``score_job`` and ``python -m scoring score``
alike, because the lock is taken in the write-back path itself
(``scoring.pipeline.score_project``).

:func:`hold` picks the kind of lock:

* **Redis** (``REDIS_URL`` set, or inside an RQ job): :func:`exclusive`, a Redis
  lock with a heartbeat.  It expires ``ttl`` s after its holder stops renewing it
  (a crashed process), so it excludes runs on every host that shares the Redis.
* **a file** (no Redis): :func:`file_exclusive`, ``fcntl.flock`` on
  ``<DATA_DIR>/locks/<key>.lock``.  The kernel drops it when the holder's process
  dies; it excludes runs on one host (sharing ``DATA_DIR``).

A second run waits for the holder (logging ``waiting for the <what> that holds the
lock ...``) up to ``wait`` seconds, then raises :class:`LockBusy`; ``wait=0`` does
not wait at all.  The locks are not re-entrant: a holder that asks again waits for
itself, so take each lock in one place only.

    with hold("llm-prelabel:lock:7:v2:ground_truth", connection=None, directory="var", wait=0) as kind:
        ...   # kind == "file"
"""
from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from core.errors import ConfigError, Error

log = logging.getLogger(__name__)

LOCK_TTL = 60      # s: a Redis lock lives this long after its holder stops renewing it
LOCK_WAIT = 600    # s: how long a run waits for an identical one to finish before giving up
POLL = 0.1         # s between two tries of a file lock


class LockBusy(Error):
    """Another run holds the lock (and did not let go within the wait)."""

    reason = "busy"


def _busy(what: str, key: str, wait: float) -> LockBusy:
    if wait <= 0:
        return LockBusy(f"another {what} is running (it holds the lock {key}); try again when it has finished")
    return LockBusy(f"another {what} has held the lock {key} for over {wait:g} s; try again when it has finished")


def _waiting(what: str, key: str, wait: float) -> None:
    log.info("waiting for the %s that holds the lock %s (up to %g s)", what, key, wait)


@contextmanager
def exclusive(connection, key: str, *, ttl: float = LOCK_TTL, wait: float = LOCK_WAIT,
              what: str = "run") -> Iterator[None]:
    """Hold the Redis lock ``key`` for the block; renewed every ``ttl/3`` s so it outlives slow work
    but not a dead process.

    Waits up to ``wait`` seconds for a current holder, then raises
    :class:`LockBusy`.  With ``connection=None`` (no Redis) the block runs
    unguarded (:func:`hold` uses a file lock instead).
    """
    if connection is None:
        yield
        return
    import redis

    lock = connection.lock(key, timeout=ttl, thread_local=False)
    token = uuid.uuid4().hex.encode()
    try:
        got = lock.acquire(blocking=False, token=token)
        if not got and wait > 0:
            _waiting(what, key, wait)
            got = lock.acquire(blocking=True, blocking_timeout=wait, token=token)
    except redis.RedisError as exc:
        raise ConfigError(f"cannot reach Redis for the lock {key} ({type(exc).__name__}); "
                          "check REDIS_URL and that Redis is running") from None
    if not got:
        raise _busy(what, key, wait)
    with _heartbeat(lock, key, ttl):
        yield


@contextmanager
def _heartbeat(lock, key: str, ttl: float) -> Iterator[None]:
    """Renew ``lock`` every ``ttl/3`` s while the block runs; release it afterwards."""
    stop = threading.Event()

    def beat():
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()
            except Exception:  # lost the lock (expired): nothing sensible to do but stop renewing
                log.warning("lost the lock %s while running", key)
                return

    thread = threading.Thread(target=beat, name=f"lock-heartbeat {key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            lock.release()
        except Exception:
            pass  # expired or taken over: it is not ours to release any more


def lock_path(directory: str, key: str) -> str:
    """The file of the file lock ``key`` under ``directory``.

    >>> lock_path("var", "llm-prelabel:lock:7:v2:ground_truth")
    'var/locks/llm-prelabel.lock.7.v2.ground_truth.lock'
    """
    return os.path.join(directory, "locks", re.sub(r"[^A-Za-z0-9_.-]", ".", key) + ".lock")


@contextmanager
def file_exclusive(path: str, *, wait: float = LOCK_WAIT, what: str = "run",
                   key: str | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created with its directory) for the block.

    Waits up to ``wait`` seconds (polling) for a current holder, then raises :class:`LockBusy`.
    The kernel releases the lock when the holder's process ends, however it ends.
    """
    import fcntl

    name = key or path
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock file {path}: {exc.strerror or exc}; check DATA_DIR") from None
    try:
        deadline = time.monotonic() + max(0.0, wait)
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from None
            if time.monotonic() >= deadline:
                raise _busy(what, name, wait)
            if not announced:
                _waiting(what, name, wait)
                announced = True
            time.sleep(POLL)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def hold(key: str, *, connection, directory: str, wait: float = LOCK_WAIT, ttl: float = LOCK_TTL,
         what: str = "run") -> Iterator[str]:
    """Hold the lock ``key``: in Redis when ``connection`` is given, else as a file lock under
    ``directory`` (``DATA_DIR``).  Yields the kind, ``"redis"`` or ``"file"``."""
    if connection is not None:
        with exclusive(connection, key, ttl=ttl, wait=wait, what=what):
            yield "redis"
    else:
        with file_exclusive(lock_path(directory, key), wait=wait, what=what, key=key):
            yield "file"
