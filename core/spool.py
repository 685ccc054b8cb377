"""Riding out a Redis outage: a short timeout, a back-off, and a local spool replayed later.

With ``REDIS_URL`` set, the stores that write while the backend serves -- the usage
ledger, the project map, the webhook hand-off to the worker -- and the scoring history
share one :class:`RedisLink` per process (:func:`redis_link`).  It gives them:

* **short calls**: the connection waits at most ``REDIS_TIMEOUT`` seconds to connect
  or for a reply, and retries once;
* **a back-off**: after a failure Redis is *down* for ``REDIS_RETRY_AFTER`` seconds and
  :meth:`RedisLink.call` fails at once (:class:`RedisDown`) instead of waiting for the
  timeout again on every request;
* **a spool**: a write that cannot reach Redis is kept in ``{SPOOL_DIR}/spool.sqlite3``
  (:class:`Spool`; one SQLite transaction, fsync'd, per batch; safe for every process on
  the host) and **replayed** when Redis answers again.

Who replays: a daemon thread of the process that spooled (started at the first spooled
write, retrying every ``REDIS_RETRY_AFTER`` s until the spool is empty), the next
successful Redis call of any process after an outage, and any process that opens its
stores while the spool holds entries (a restarted backend or the worker's next job).
Replaying is safe when several processes try at once (one replayer at a time under an
``fcntl.flock`` on ``spool.lock``; the others come back later) and idempotent (an entry
is removed only after Redis took it, and each kind's replay can run twice without
effect: ledger records are counted once per record id, history runs are keyed by run
id, project settings are plain sets, webhook events fold into the pending job).

Each kind of entry is registered by the store that writes it (:data:`KINDS`, one
line in that module); a process replays only the kinds it knows.  Kinds made of plain
idempotent commands (:func:`run_commands`, e.g. the scoring history's runs) are
registered here, so any process replays them (the backend never imports ``scoring``).
"""
from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import redis

from core.settings import Settings
from core.stores import SQLiteFile, redis_connection

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.sqlite3"
LOCK_FILE = "spool.lock"
REPLAY_BATCH = 500        # entries replayed per round trip
MIN_PAUSE = 0.2           # s between replay attempts of the background thread at the least


class RedisDown(redis.exceptions.ConnectionError):
    """Redis failed less than ``REDIS_RETRY_AFTER`` s ago: not tried again yet."""


REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


@dataclass(frozen=True)
class Kind:
    """One kind of spooled write: what it is called in messages, and how to replay a batch.

    ``replay(connection, settings, payloads)`` writes the payloads to Redis; it must be
    idempotent (it may run again for entries Redis already took).
    """

    noun: str
    replay: Callable[[Any, Settings, list[dict]], None]


def run_commands(connection, _settings, payloads: list[dict]) -> None:
    """Write payloads of plain Redis commands (``{"commands": [["SET", key, value], ...]}``), each in one MULTI.

    For writes that any process can replay without the module that made them, as long as
    the commands are idempotent (SET, ZADD, HSET...).
    """
    for payload in payloads:
        with connection.pipeline() as pipe:
            for command in payload["commands"]:
                pipe.execute_command(*command)
            pipe.execute()


KINDS: dict[str, Kind] = {   # kind -> Kind; each store adds its own line (here: kinds of plain commands)
    "history": Kind("scoring run(s)", run_commands),     # scoring.history: replayed by the backend too
}


def spool_dir(settings: Settings) -> str:
    """``SPOOL_DIR``, else ``{DATA_DIR}/spool``."""
    return settings.spool_dir or os.path.join(settings.data_dir, "spool")


def safe_url(url: str) -> str:
    """A Redis URL without its password, for messages.

    >>> safe_url("redis://:s3cret@cache:6379/0"), safe_url("redis://127.0.0.1:6379/0")
    ('redis://***@cache:6379/0', 'redis://127.0.0.1:6379/0')
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def describe(counts: dict[str, int]) -> str:
    """``{"ledger": 3, "event": 1}`` -> ``"3 usage records, 1 webhook event(s)"`` (registered nouns)."""
    return ", ".join(f"{n} {KINDS[k].noun if k in KINDS else k + ' entries'}" for k, n in sorted(counts.items()))


# --------------------------------------------------------------------------- the spool file
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, key TEXT NOT NULL,
    payload TEXT NOT NULL, ts REAL NOT NULL, error TEXT, UNIQUE (kind, key));
"""


class Spool:
    """The writes waiting for Redis, in one SQLite file shared by the processes of a host.

    An entry is ``(kind, key, payload)``; a second entry with the same kind and key
    replaces the first (and goes to the back: the newest write wins).  Entries whose
    replay failed for another reason than Redis being down are kept aside with the
    error (:meth:`failed`), so one bad entry never holds up the others.
    """

    def __init__(self, directory: str):
        self.path = os.path.abspath(os.path.join(directory, SPOOL_FILE))
        self.lock_path = os.path.join(directory, LOCK_FILE)
        self._file: SQLiteFile | None = None   # opened at the first write, or read of an existing file
        self._opening = threading.Lock()

    def _db(self, create: bool = False) -> SQLiteFile | None:
        if self._file is None and (create or os.path.exists(self.path)):
            with self._opening:
                if self._file is None:
                    self._file = SQLiteFile(self.path, _SCHEMA, what="the Redis spool", synchronous="FULL")
        return self._file

    def _query(self, sql: str, args: Any = ()) -> list[tuple]:
        db = self._db()
        return db.query(sql, args) if db is not None else []

    def _write(self, sql: str, rows: list[tuple]) -> None:
        db = self._db(create=True)
        assert db is not None
        with db.transaction() as connection:
            connection.executemany(sql, rows)

    def put(self, kind: str, items: list[tuple[str, dict]]) -> None:
        """Keep ``(key, payload)`` items, all in one fsync'd transaction."""
        now = time.time()
        self._write("INSERT OR REPLACE INTO spool (kind, key, payload, ts) VALUES (?, ?, ?, ?)",
                    [(kind, key, json.dumps(payload, default=str), now) for key, payload in items])

    def pending(self, kind: str, key: str) -> dict | None:
        """The payload waiting under ``(kind, key)``, if any."""
        rows = self._query("SELECT payload FROM spool WHERE kind = ? AND key = ? AND error IS NULL", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def counts(self, kinds: list[str] | None = None) -> dict[str, int]:
        """Entries waiting, per kind (only ``kinds`` when given)."""
        rows = self._query("SELECT kind, COUNT(*) FROM spool WHERE error IS NULL GROUP BY kind")
        return {k: n for k, n in rows if kinds is None or k in kinds}

    def failed(self) -> list[tuple[str, str, str]]:
        """``(kind, key, error)`` of the entries that could not be replayed."""
        return [(k, key, e) for k, key, e in self._query("SELECT kind, key, error FROM spool WHERE error IS NOT NULL")]

    def take(self, kinds: list[str], limit: int = REPLAY_BATCH) -> list[tuple[int, str, dict]]:
        """The oldest ``limit`` waiting entries of ``kinds``: ``(id, kind, payload)`` (they stay until removed)."""
        if not kinds:
            return []
        marks = ", ".join("?" * len(kinds))
        rows = self._query(f"SELECT id, kind, payload FROM spool WHERE error IS NULL AND kind IN ({marks}) "
                           "ORDER BY id LIMIT ?", (*kinds, limit))
        return [(i, k, json.loads(p)) for i, k, p in rows]

    def remove(self, ids: list[int]) -> None:
        """Forget entries Redis took (an entry replaced meanwhile has a new id and stays)."""
        self._write("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def set_aside(self, ids: list[int], error: str) -> None:
        """Keep entries that failed to replay for another reason than Redis being down."""
        self._write("UPDATE spool SET error = ? WHERE id = ?", [(error[:500], i) for i in ids])

    @contextmanager
    def replay_lock(self) -> Iterator[bool]:
        """``True`` when this caller may replay now (no other thread or process is replaying)."""
        os.makedirs(os.path.dirname(self.lock_path) or ".", exist_ok=True)
        with open(self.lock_path, "a") as handle:   # a new open file: flock excludes other threads too
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the link
class RedisLink:
    """One process's connection to ``REDIS_URL`` for the stores, with back-off, spool and replayer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = safe_url(settings.redis_url or "")
        self.connection = redis_connection(settings, "the Redis stores", timeout=settings.redis_timeout)
        self.spool = Spool(spool_dir(settings))
        self.error: str | None = None          # the last failure, while Redis is down
        self.replayed = 0                      # entries this process replayed
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        if self.spool.counts(list(KINDS)):
            self.wake()

    # -- calls -------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (a Redis call); :class:`RedisDown` at once while backing off.

        A connection error or timeout marks Redis down for ``REDIS_RETRY_AFTER`` s and is
        raised; the first success after an outage wakes the replayer.
        """
        if time.monotonic() < self._down_until:
            raise RedisDown(f"Redis at {self.url} is down ({self.error})")
        try:
            result = fn(*args, **kwargs)
        except REDIS_DOWN as exc:
            self._mark_down(exc)
            raise
        if self.error is not None:
            self.error = None
            log.warning("Redis at %s answers again; replaying the spool %s", self.url, self.spool.path)
            self.wake()
        return result

    def _mark_down(self, exc: Exception) -> None:
        if self.error is None:
            log.warning("Redis at %s unreachable (%s: %s); writes are kept in %s until it is back",
                        self.url, type(exc).__name__, exc, self.spool.path)
        self.error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self.settings.redis_retry_after

    def write_or_keep(self, kind: str, items: list[tuple[str, dict]], write: Callable[[], Any]) -> bool:
        """Run ``write`` against Redis; when Redis is down keep ``items`` in the spool instead.

        Returns True when written, False when spooled (to be replayed by ``KINDS[kind]``).
        """
        try:
            self.call(write)
            return True
        except REDIS_DOWN:
            self.keep(kind, items)
            return False

    def keep(self, kind: str, items: list[tuple[str, dict]]) -> None:
        """Spool ``items`` now and make sure they are replayed."""
        if items:
            self.spool.put(kind, items)
            self.wake()

    # -- replay ------------------------------------------------------------------------
    def replay(self) -> int:
        """Replay what the spool holds of the kinds this process knows; returns how many wait still.

        Nothing happens (and the count is returned) while another thread or process replays.
        """
        kinds = list(KINDS)
        with self.spool.replay_lock() as mine:
            if not mine:
                return sum(self.spool.counts(kinds).values())
            while rows := self.spool.take(kinds):
                for kind, group in itertools.groupby(rows, key=lambda row: row[1]):
                    if not self._replay_group(kind, list(group)):
                        return sum(self.spool.counts(kinds).values())
        return 0

    def _replay_group(self, kind: str, rows: list[tuple[int, str, dict]]) -> bool:
        ids = [row[0] for row in rows]
        try:
            self.call(KINDS[kind].replay, self.connection, self.settings, [row[2] for row in rows])
        except REDIS_DOWN:
            return False
        except Exception as exc:  # a bad entry must not hold up the others: find it, keep it aside, say why
            if len(rows) > 1:
                return all(self._replay_group(kind, [row]) for row in rows)
            log.exception("could not replay a spooled %s; kept aside in %s", KINDS[kind].noun, self.spool.path)
            self.spool.set_aside(ids, f"{type(exc).__name__}: {exc}")
            return True
        self.spool.remove(ids)
        self.replayed += len(ids)
        log.info("replayed %d spooled %s into Redis at %s", len(ids), KINDS[kind].noun, self.url)
        return True

    def wake(self) -> None:
        """Start this process's replayer thread unless it runs (a forked child starts its own)."""
        with self._lock:
            if self._thread is not None and self._thread_pid == os.getpid() and self._thread.is_alive():
                return
            self._thread_pid = os.getpid()
            self._thread = threading.Thread(target=self._replay_until_empty, name="redis-spool-replay", daemon=True)
            self._thread.start()

    def _replay_until_empty(self) -> None:
        while True:
            time.sleep(max(MIN_PAUSE, self._down_until - time.monotonic()))
            try:
                left = self.replay()
            except Exception:  # the spool file itself failed: log, try again later
                log.exception("replaying the Redis spool %s failed", self.spool.path)
                left = 1
            with self._lock:
                if left == 0 and not self.spool.counts(list(KINDS)):
                    self._thread = None
                    return

    # -- health ------------------------------------------------------------------------
    def health(self) -> str | None:
        """``None`` when Redis answers and nothing waits; else what is degraded, for ``/health``."""
        try:
            self.call(self.connection.ping)
            down = None
        except REDIS_DOWN:
            down = self.error
        counts, failed = self.spool.counts(), self.spool.failed()
        if down is None and not counts and not failed:
            return None
        parts = [f"unreachable at {self.url}: {down}" if down else f"reachable at {self.url}; replaying the spool"]
        if counts:
            parts.append(f"{describe(counts)} spooled in {self.spool.path}")
        if failed:
            parts.append(f"{len(failed)} spooled entries could not be replayed ({failed[0][2]}); "
                         f"they stay in {self.spool.path}")
        return "; ".join(parts)


_LINKS: dict[tuple, RedisLink] = {}
_LINKS_LOCK = threading.Lock()


def redis_link(settings: Settings) -> RedisLink:
    """The process's :class:`RedisLink` for these settings (one per Redis URL and spool directory)."""
    ident = (settings.redis_url, spool_dir(settings), settings.redis_timeout, settings.redis_retry_after)
    with _LINKS_LOCK:
        link = _LINKS.get(ident)
        if link is None:
            link = _LINKS[ident] = RedisLink(settings)
        return link
