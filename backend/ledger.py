"""The usage ledger: tokens, USD and latency of every LLM call, per (version, task).

Durable and shared between processes: the backend writes, the scoring side reads.
:func:`open_ledger` picks the store:

* ``REDIS_URL`` set -> :class:`backend.ledger_redis.RedisLedger`;
* otherwise -> :class:`SQLiteLedger` at ``{DATA_DIR}/ledger.sqlite3`` (WAL mode, so several
  threads and processes can write; each write is one transaction).

One :class:`UsageRecord` is one provider call (a re-prediction of a task is another call and
costs again).  ``status`` is ``"ok"`` or the error's reason slug (``core.errors``:
``truncated``, ``rate_limited``, ``all_dropped``, ...).  ``usd`` is None when the model's price is unknown.
A task answered by the response cache (``backend.cache``) gets a record too, with ``cached``
true, 0 tokens, ``usd`` 0 and ``saved_usd`` = what the original call cost.
``dropped`` (``{"spans": 1, "labels": 2}``: regions of the answer dropped, per kind), ``repaired``
(answers rewritten by a handler's repair rule, e.g. a taxonomy path guessed from its last name) and
``notes`` (at most 5 short lines saying what) come from the answer's stats
(``backend.controls.base.quality``); they are empty for calls recorded before these fields existed.
``confidence`` (``{control: value in [0, 1]}``, raw: before calibration; ``{}`` when the version's
``confidence:`` is ``none``) and ``samples`` (provider calls made for the task: k for ``consistency``,
whose tokens and USD the record's totals include) come from :mod:`backend.confidence`.

``summary(version, project=None)`` returns::

    {"version", "project", "calls", "tasks",            # tasks = distinct task ids
     "input_tokens", "output_tokens",
     "usd",            # sum over calls with a known price; None when no call had one
     "usd_complete",   # True when every call had a known price (usd is then the full cost)
     "errors": {reason: count}, "latency_p50", "latency_p95",   # nearest-rank, seconds
     "first_ts", "last_ts",                                      # epoch seconds
     "dropped": {kind: count}, "repaired"}                       # totals of the records' fields

The Redis store (layout, atomic Lua write, spool replay) is in :mod:`backend.ledger_redis`.
"""
from __future__ import annotations

import json
import math
import sqlite3
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Protocol

from core import spool
from core.stores import LEDGER_PREFIX, SQLiteFile, sqlite_path

DEFAULT_PREFIX = LEDGER_PREFIX


@dataclass
class UsageRecord:
    """One provider call."""

    version: str
    task_id: Any                  # the Label Studio task id (int), or any JSON-able id
    project: str | None
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = None
    latency_s: float = 0.0
    status: str = "ok"
    ts: float = field(default_factory=time.time)
    cached: bool = False          # answered by the response cache (backend.cache): no call, usd 0
    saved_usd: float | None = None  # cached: what the call would have cost (None: price unknown)
    # --- what the answer lost or had guessed (issue 8 finding 19) ---
    dropped: dict = field(default_factory=dict)   # {kind: count}, kinds: spans, labels, boxes, values
    repaired: int = 0                             # answers rewritten by a repair rule (taxonomy guess, clipped box)
    notes: list = field(default_factory=list)     # at most 5 short notes saying what was dropped/repaired
    # --- confidence (issue 11; backend.confidence) ---
    confidence: dict = field(default_factory=dict)  # {control: raw confidence in [0, 1]}; {} for method none
    samples: int = 1                                # provider calls made for this task (consistency: k)
    rid: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False)  # id: a replayed record counts once

    def to_json(self) -> str:
        # the fields as they are (dataclasses.asdict deep-copies the dicts and lists first)
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "UsageRecord":
        return cls(**json.loads(text))


def make_record(version, task_id: Any, project: str | None, usage=None, status: str = "ok",
                ts: float | None = None) -> UsageRecord:
    """A record for one call of PromptVersion ``version`` with its Usage (None = nothing spent),
    priced by :mod:`backend.pricing` (``usd`` None when the price is unknown).

    >>> from backend.versions import PromptVersion, Price
    >>> from backend.providers.base import Usage
    >>> v = PromptVersion("v1", "openai", "gpt-4o-mini", "{text}", price=Price(1, 2))
    >>> make_record(v, 7, "3", Usage(1000, 500, 0.4)).usd
    0.002
    """
    from backend.pricing import cost_usd, price_for

    rec = UsageRecord(
        version=version.id, task_id=task_id, project=None if project is None else str(project),
        provider=version.provider, model=version.model,
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        latency_s=float(getattr(usage, "latency_s", 0.0) or 0.0), status=status,
        ts=time.time() if ts is None else ts,
    )
    rec.usd = cost_usd(rec, price_for(version))
    return rec


def _rank(n: int, p: float) -> int:
    """Nearest-rank percentile index (0-based) among n sorted values: ceil(p*n) - 1."""
    return max(0, min(n - 1, math.ceil(p * n) - 1))


class Ledger(Protocol):
    def record(self, rec: UsageRecord) -> None: ...
    def record_many(self, recs: Iterable[UsageRecord]) -> None: ...
    def summary(self, version: str, project: str | None = None) -> dict: ...
    def versions(self, project: str | None = None) -> list[str]: ...
    def records(self, version: str, project: str | None = None) -> list[UsageRecord]: ...
    def close(self) -> None: ...


def _empty_summary(version: str, project: str | None) -> dict:
    return {"version": version, "project": project, "calls": 0, "tasks": 0, "input_tokens": 0,
            "output_tokens": 0, "usd": None, "usd_complete": True, "errors": {}, "latency_p50": None,
            "latency_p95": None, "first_ts": None, "last_ts": None, "dropped": {}, "repaired": 0}


# --- SQLite ------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    task_id,
    project TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    usd REAL,
    latency_s REAL NOT NULL,
    status TEXT NOT NULL,
    ts REAL NOT NULL,
    cached INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL,
    dropped TEXT,
    repaired INTEGER NOT NULL DEFAULT 0,
    notes TEXT,
    rid TEXT,
    confidence TEXT,
    samples INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS usage_version_project ON usage (version, project);
CREATE INDEX IF NOT EXISTS usage_version_latency ON usage (version, latency_s);
"""
_COLUMNS = ("version", "task_id", "project", "provider", "model", "input_tokens", "output_tokens",
            "usd", "latency_s", "status", "ts", "cached", "saved_usd", "dropped", "repaired", "notes",
            "rid", "confidence", "samples")
# columns added after the first release: ALTER TABLE adds them to older files when they are opened
_ADDED = {"cached": "INTEGER NOT NULL DEFAULT 0", "saved_usd": "REAL",
          "dropped": "TEXT", "repaired": "INTEGER NOT NULL DEFAULT 0", "notes": "TEXT",
          "rid": "TEXT",  # rid: files written before record ids existed
          "confidence": "TEXT", "samples": "INTEGER NOT NULL DEFAULT 1"}
# stored as JSON text; NULL (older rows) reads as empty
_JSON_COLUMNS = {"dropped": dict, "notes": list, "confidence": dict}


def _migrate(db) -> None:
    """Add the columns of :data:`_ADDED` that an older ledger file lacks (idempotent; a process that
    loses the race to another one adding the same column just finds it there)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    for name, decl in _ADDED.items():
        if name not in have:
            try:
                db.execute(f"ALTER TABLE usage ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise


def _from_row(row: tuple) -> UsageRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name, kind in _JSON_COLUMNS.items():
        values[name] = json.loads(values[name]) if values[name] else kind()
    values["repaired"] = values["repaired"] or 0
    values["cached"] = bool(values["cached"])  # stored as 0/1
    if not values["rid"]:  # rows written before record ids existed get a fresh one
        del values["rid"]
    return UsageRecord(**values)


class SQLiteLedger:
    """The ledger in one SQLite file (WAL mode; safe for several threads and processes)."""

    def __init__(self, path: str):
        self.path = path
        self._db = SQLiteFile(path, _SCHEMA, what="the usage ledger")
        with self._db.locked() as db:
            _migrate(db)

    def record(self, rec: UsageRecord) -> None:
        """Append one record."""
        self.record_many([rec])

    def record_many(self, recs: Iterable[UsageRecord]) -> None:
        """Append records in one transaction."""
        rows = [tuple(_sql_value(getattr(r, c)) for c in _COLUMNS) for r in recs]
        if not rows:
            return
        sql = f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._db.transaction() as db:
            db.executemany(sql, rows)

    def _where(self, version: str, project: str | None) -> tuple[str, list]:
        if project is None:
            return "version = ?", [version]
        return "version = ? AND project = ?", [version, str(project)]

    def summary(self, version: str, project: str | None = None) -> dict:
        """Totals for a version (optionally one project); see the module docstring."""
        where, args = self._where(version, project)
        with self._db.locked() as db:
            row = db.execute(
                f"SELECT COUNT(*), COUNT(DISTINCT task_id), COALESCE(SUM(input_tokens), 0), "
                f"COALESCE(SUM(output_tokens), 0), SUM(usd), COUNT(usd), MIN(ts), MAX(ts), "
                f"COALESCE(SUM(repaired), 0) FROM usage WHERE {where}",
                args).fetchone()
            calls = row[0]
            out = _empty_summary(version, project)
            if not calls:
                return out
            errors = dict(db.execute(
                f"SELECT status, COUNT(*) FROM usage WHERE {where} AND status != 'ok' GROUP BY status", args))
            dropped = {k: int(n) for k, n in db.execute(
                f"SELECT j.key, SUM(j.value) FROM usage, json_each(usage.dropped) AS j WHERE {where} "
                "GROUP BY j.key ORDER BY j.key", args)}

            def pct(p: float) -> float:
                return db.execute(
                    f"SELECT latency_s FROM usage WHERE {where} ORDER BY latency_s LIMIT 1 OFFSET ?",
                    args + [_rank(calls, p)]).fetchone()[0]

            out.update(calls=calls, tasks=row[1], input_tokens=row[2], output_tokens=row[3],
                       usd=round(row[4], 10) if row[5] else None, usd_complete=row[5] == calls,
                       errors=errors, latency_p50=pct(0.5), latency_p95=pct(0.95), first_ts=row[6], last_ts=row[7],
                       dropped=dropped, repaired=row[8])
        return out

    def versions(self, project: str | None = None) -> list[str]:
        """Version ids with at least one record (in that project), sorted."""
        sql, args = "SELECT DISTINCT version FROM usage", []
        if project is not None:
            sql, args = sql + " WHERE project = ?", [str(project)]
        return sorted(r[0] for r in self._db.query(sql, args))

    def records(self, version: str, project: str | None = None) -> list[UsageRecord]:
        """Every record of a version (optionally one project), oldest first."""
        where, args = self._where(version, project)
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM usage WHERE {where} ORDER BY id", args)
        return [_from_row(r) for r in rows]

    def close(self) -> None:
        self._db.close()


def _sql_value(v: Any) -> Any:
    if v is None or isinstance(v, (int, float, str)):
        return v
    return json.dumps(v)


def open_ledger(settings, *, prefix: str = DEFAULT_PREFIX) -> Ledger:
    """RedisLedger when ``settings.redis_url`` is set (spooling while Redis is down), else SQLiteLedger
    at ``{data_dir}/ledger.sqlite3``."""
    if settings.redis_url:
        from backend.ledger_redis import RedisLedger  # (imports this module: defined after it)

        return RedisLedger(settings.redis_url, prefix=prefix, link=spool.redis_link(settings))
    return SQLiteLedger(sqlite_path(settings, "ledger.sqlite3"))

