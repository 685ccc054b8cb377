"""Where the project keeps its state: the Redis key names and how Redis and SQLite are opened.

Three small stores have a Redis form and a SQLite form -- the project map
(``backend.projects``), the usage ledger (``backend.ledger``) and the run history
(``scoring.history``); the write-back locks (``core.locks``) live in Redis when it is
set, else in files under ``DATA_DIR/locks``.  They share:

* **one key prefix**: every Redis key this project writes starts with
  :data:`KEY_PREFIX` (``llm-prelabel:``), built by :func:`key`.  RQ's own keys keep
  RQ's prefix (``rq:``)::

      llm-prelabel:project-versions     hash project id -> prompt version id
      llm-prelabel:ledger:...           the usage ledger (layout in backend.ledger)
      llm-prelabel:history:...          the scoring run history (layout in scoring.history)
      llm-prelabel:lock:...             locks that keep identical scoring runs apart

* **one way to open Redis**: :func:`redis_connection` (``REDIS_URL``; a missing URL or
  an unreachable server is a ``ConfigError`` naming what needed it);

* **one way to open SQLite**: :class:`SQLiteFile`, a file under ``DATA_DIR`` opened once
  per process -- parent directories created, ``timeout`` seconds of waiting for another
  writer, one connection shared by the threads (serialised by a lock), autocommit
  (a row written by another process is seen by the next read) and, by default, WAL
  (readers never wait for a writer).

* **one way through a Redis outage**: the stores that write to Redis while serving
  (ledger, history, project map, webhook hand-off) share one :class:`core.spool.RedisLink`
  per process (:func:`core.spool.redis_link`): a short timeout and a back-off while Redis
  is down, and the writes that could not be made kept in a local spool under
  ``SPOOL_DIR`` and replayed when Redis is back.  Extra keys::

      llm-prelabel:ledger:ids:<version>   set of record ids already counted (replays are idempotent)

>>> key("ledger"), key("lock", "7", "v2", "ground_truth")
('llm-prelabel:ledger', 'llm-prelabel:lock:7:v2:ground_truth')
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from core.errors import ConfigError
from core.settings import Settings

KEY_PREFIX = "llm-prelabel"          # every Redis key this project writes starts with "llm-prelabel:"


def key(*parts: object) -> str:
    """A Redis key under :data:`KEY_PREFIX`: ``key("ledger")`` -> ``"llm-prelabel:ledger"``."""
    return ":".join([KEY_PREFIX, *map(str, parts)])


PROJECT_VERSIONS_KEY = key("project-versions")   # backend.projects (unchanged name)
LEDGER_PREFIX = key("ledger")                     # backend.ledger (was "llmpl:ledger")
HISTORY_PREFIX = key("history")                   # scoring.history (was "scoring:history")
LOCK_PREFIX = key("lock")                         # scoring.jobs locks (was "scoring:lock")

SQLITE_TIMEOUT = 30.0   # s a SQLite write waits for another process's write before failing


# --------------------------------------------------------------------------- Redis
def redis_connection(url_or_settings: str | Settings | None, what: str, *, ping: bool = False,
                     timeout: float | None = None):
    """A ``redis.Redis`` for ``REDIS_URL`` (a URL or the settings holding it).

    ``what`` names the user of the connection in errors ("the usage ledger", "the
    worker"...).  Without a URL: ``ConfigError`` saying to set ``REDIS_URL``.  With
    ``ping``, the server is asked once now, so an unreachable one fails at start-up
    with a ``ConfigError`` rather than at the first write.  With ``timeout`` (seconds),
    connecting and each reply wait at most that long and a failed call is retried once
    (redis-py's default retries a refused connection for seconds): for the stores that
    spool their writes while Redis is down (``core.spool``), not for the RQ worker,
    whose blocking reads wait for minutes.
    """
    import redis

    url = url_or_settings.redis_url if isinstance(url_or_settings, Settings) else url_or_settings
    if not url:
        raise ConfigError(f"{what} needs Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    options: dict[str, Any] = {}
    if timeout is not None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = dict(socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 1))
    try:
        connection = redis.Redis.from_url(url, **options)
        if ping:
            connection.ping()
    except (redis.RedisError, ValueError) as exc:
        raise ConfigError(f"cannot reach Redis for {what} ({type(exc).__name__}); "
                          "check REDIS_URL and that Redis is running") from None
    return connection


def delete_keys(connection, prefix: str) -> int:
    """Delete every key that starts with ``prefix + ":"`` (tests and resets); returns how many."""
    keys = list(connection.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        connection.delete(*keys[i:i + 500])
    return len(keys)


# --------------------------------------------------------------------------- SQLite
def sqlite_path(settings: Settings, filename: str) -> str:
    """``{DATA_DIR}/{filename}``, where a store keeps its SQLite file when ``REDIS_URL`` is unset."""
    return os.path.join(settings.data_dir, filename)


class SQLiteFile:
    """One SQLite file opened once per process and shared by its threads.

    ``schema`` (SQL statements, e.g. ``CREATE TABLE IF NOT EXISTS``) runs once at
    opening; ``what`` names the store in errors.  Every method holds the lock for the
    duration of its statements; :meth:`transaction` groups several writes atomically.
    """

    def __init__(self, path: str, schema: str = "", *, what: str = "a store", wal: bool = True,
                 timeout: float = SQLITE_TIMEOUT, synchronous: str = "NORMAL"):
        self.path = path
        self._lock = threading.Lock()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
            if wal:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")   # FULL: fsync at every commit
            if schema:
                self._db.executescript(schema)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open {what} at {path}: {exc}; check DATA_DIR") from None

    def query(self, sql: str, args: Any = ()) -> list[tuple]:
        """All rows of one statement."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def execute(self, sql: str, args: Any = ()) -> int:
        """Run one statement (atomic on its own); returns the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for several reads that belong together (no other thread runs meanwhile)."""
        with self._lock:
            yield self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
