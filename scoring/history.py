"""Durable history of scoring runs: Redis when ``REDIS_URL`` is set, SQLite otherwise.

A run is a plain dict (extra keys are kept as they are)::

    {"run_id": "20260101T120000-3f9a1c",   # set by add() when missing
     "project": "7", "version": "v2", "reference": "ground_truth",
     "started_at": "2026-01-01T12:00:00+00:00", "finished_at": "2026-01-01T12:00:09+00:00",
     "score": 0.84, "per_control": {"sentiment": 0.9, "summary": 0.78},
     "n_tasks": 503, "n_compared": 500, "n_skipped": 3, "cost": {...cost section...},
     "write_back": True}

Times are stored as ISO-8601 UTC strings (``add`` accepts datetimes, epoch
seconds or ISO strings); ``project`` is stored as a string.
``list`` is newest first (by ``finished_at``); ``trend`` is oldest first.

Storage: Redis keys ``<prefix>:<project>:runs`` (sorted set of run ids by
finish time) and ``<prefix>:run:<run_id>`` (the run as JSON), default prefix
``llm-prelabel:history`` (``core.stores``); they never expire, so history lasts as long as Redis
persists its data (RDB/AOF).  SQLite: one table ``runs`` in
``{DATA_DIR}/history.sqlite3``.

Redis down: :func:`open_history` gives a history on the process's ``core.spool.RedisLink``;
a run that cannot reach Redis is kept in the local spool (``SPOOL_DIR``) and written
when Redis is back (keyed by run id, so a replay twice stores it once); ``add`` still
returns its run id.  Reads need Redis.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Any, Protocol

from core import spool
from core.settings import Settings
from core.stores import HISTORY_PREFIX, SQLiteFile, sqlite_path
from scoring.export import GROUND_TRUTH


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), timezone.utc)
    if isinstance(value, str) and value:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    raise ValueError(f"not a time: {value!r}")


def _iso(value: Any) -> str:
    return _to_datetime(value).astimezone(timezone.utc).isoformat()


def _normalize(run: dict) -> dict:
    """Copy ``run`` with a run id, string project and ISO times; check the required keys."""
    from core.errors import ScoringError

    if not isinstance(run, dict):
        raise ScoringError("a history run must be a dict")
    missing = [k for k in ("project", "version") if run.get(k) in (None, "")]
    if missing:
        raise ScoringError(f"a history run needs {', '.join(missing)}")
    out = dict(run)
    out["project"] = str(run["project"])
    out["version"] = str(run["version"])
    out["reference"] = str(run.get("reference") or GROUND_TRUTH)
    finished = _to_datetime(run.get("finished_at") or datetime.now(timezone.utc))
    out["finished_at"] = _iso(finished)
    out["started_at"] = _iso(run.get("started_at") or finished)
    if not out.get("run_id"):
        out["run_id"] = f"{finished.astimezone(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    out["run_id"] = str(out["run_id"])
    return out


def _dumps(run: dict) -> str:
    return json.dumps(run, default=str, sort_keys=True)


def series_name(run: dict) -> str:
    """The name of the trend series a run belongs to: the version, or ``"v2 vs v1"`` for model-vs-model runs."""
    ref = run.get("reference") or GROUND_TRUTH
    return str(run["version"]) if ref == GROUND_TRUTH else f"{run['version']} vs {ref}"


Trend = dict[str, list[tuple[str, float | None]]]   # {series: [(finished_at, score), ...]}


def _trend(runs_newest_first: list[dict]) -> Trend:
    out: dict[str, list[tuple[str, float | None]]] = {}
    for run in reversed(runs_newest_first):
        out.setdefault(series_name(run), []).append((run["finished_at"], run.get("score")))
    return out


COST_KEYS = ("input_tokens", "output_tokens", "usd", "usd_per_task", "projected_usd", "calls", "complete")


def run_from_report(report: dict, *, project, started_at, finished_at, **extra) -> dict:
    """The history record of one scoring report (the engine's report plus ``cost``).

    Example::

        >>> r = run_from_report({"version": "v1", "reference": "ground_truth", "score": 0.5,
        ...     "per_control": {"c": {"metric": "exact", "score": 0.5, "n": 4}},
        ...     "n_tasks": 4, "n_skipped": 1}, project=3, started_at=0, finished_at=9)
        >>> r["per_control"], r["finished_at"]
        ({'c': 0.5}, '1970-01-01T00:00:09+00:00')
    """
    per_control = {
        name: (v.get("score") if isinstance(v, dict) else v)
        for name, v in (report.get("per_control") or {}).items()
    }
    cost = report.get("cost") or {}
    run = {
        "project": str(project),
        "version": report.get("version"),
        "reference": report.get("reference") or GROUND_TRUTH,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "score": report.get("score"),
        "per_control": per_control,
        "n_tasks": report.get("n_tasks"),
        "n_compared": report.get("n_compared", report.get("n_tasks")),
        "n_skipped": report.get("n_skipped"),
        "kappa": report.get("kappa") or {},
        "alpha": report.get("alpha") or {},
        "cost": {k: cost.get(k) for k in COST_KEYS if k in cost},
    }
    run.update(extra)
    return run


class History(Protocol):
    def add(self, run: dict) -> str: ...
    def list(self, project, version: str | None = None, limit: int = 100) -> list[dict]: ...
    def trend(self, project) -> Trend: ...


def _run_commands(prefix: str, run: dict) -> dict:
    """The Redis commands that store a normalised run (idempotent: keyed by run id), as a spool payload."""
    ts = _to_datetime(run["finished_at"]).timestamp()
    return {"commands": [["SET", f"{prefix}:run:{run['run_id']}", _dumps(run)],
                         ["ZADD", f"{prefix}:{run['project']}:runs", ts, run["run_id"]]]}


class RedisHistory:
    """Run history in Redis (see the module docstring for the keys).

    With ``link`` (``core.spool.RedisLink``) a run that cannot reach Redis is spooled.
    """

    def __init__(self, connection, prefix: str = HISTORY_PREFIX, *, link: spool.RedisLink | None = None):
        self.r = connection
        self.prefix = prefix
        self.link = link

    def _project_key(self, project) -> str:
        return f"{self.prefix}:{project}:runs"

    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def add(self, run: dict) -> str:
        """Store one run; returns its run id (kept in the spool when Redis is down and there is a link)."""
        run = _normalize(run)
        payload = _run_commands(self.prefix, run)
        if self.link is None:
            spool.run_commands(self.r, None, [payload])
        else:   # spool kind "history" is replayed by core.spool itself: the backend can replay it too
            key = f"{self.prefix}:{run['run_id']}"
            self.link.write_or_keep("history", [(key, payload)], lambda: spool.run_commands(self.r, None, [payload]))
        return run["run_id"]

    def _iter(self, project):
        key = self._project_key(project)
        start, batch = 0, 200
        while True:
            ids = self.r.zrevrange(key, start, start + batch - 1)
            if not ids:
                return
            blobs = self.r.mget([self._run_key(i.decode() if isinstance(i, bytes) else i) for i in ids])
            for blob in blobs:
                if blob:
                    yield json.loads(blob)
            start += batch

    def list(self, project, version: str | None = None, limit: int = 100) -> list[dict]:
        """Runs of ``project`` (optionally one version), newest first, at most ``limit``."""
        out = []
        for run in self._iter(str(project)):
            if version is None or run.get("version") == version:
                out.append(run)
                if len(out) >= limit:
                    break
        return out

    def trend(self, project) -> Trend:
        """``{series: [(finished_at, score), ...]}`` oldest first; series = :func:`series_name`."""
        return _trend(list(self._iter(str(project))))

    def clear(self, project) -> int:
        """Delete every run of ``project``; returns how many."""
        key = self._project_key(str(project))
        ids = [i.decode() if isinstance(i, bytes) else i for i in self.r.zrange(key, 0, -1)]
        if ids:
            self.r.delete(*[self._run_key(i) for i in ids])
        self.r.delete(key)
        return len(ids)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT UNIQUE NOT NULL,
    project TEXT NOT NULL, version TEXT NOT NULL, reference TEXT NOT NULL, finished_ts REAL NOT NULL,
    score REAL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_project ON runs (project, finished_ts);
"""


class SQLiteHistory:
    """Run history in one SQLite file (safe for several processes: WAL, one statement per write)."""

    def __init__(self, path: str):
        self.path = path
        self._db = SQLiteFile(path, _SCHEMA, what="the scoring history")

    def add(self, run: dict) -> str:
        """Store one run (replacing a run with the same id); returns its run id."""
        run = _normalize(run)
        score = run.get("score")
        self._db.execute(
            "INSERT OR REPLACE INTO runs (run_id, project, version, reference, finished_ts, score, data)"
            " VALUES (?,?,?,?,?,?,?)",
            (run["run_id"], run["project"], run["version"], run["reference"],
             _to_datetime(run["finished_at"]).timestamp(), score if isinstance(score, (int, float)) else None,
             _dumps(run)),
        )
        return run["run_id"]

    def list(self, project, version: str | None = None, limit: int = 100) -> list[dict]:
        """Runs of ``project`` (optionally one version), newest first, at most ``limit``."""
        sql = "SELECT data FROM runs WHERE project = ?"
        params: list[Any] = [str(project)]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        sql += " ORDER BY finished_ts DESC, seq DESC LIMIT ?"
        params.append(int(limit))
        return [json.loads(row[0]) for row in self._db.query(sql, params)]

    def trend(self, project) -> Trend:
        """``{series: [(finished_at, score), ...]}`` oldest first; series = :func:`series_name`."""
        rows = self._db.query("SELECT data FROM runs WHERE project = ? ORDER BY finished_ts DESC, seq DESC",
                              (str(project),))
        return _trend([json.loads(r[0]) for r in rows])

    def clear(self, project) -> int:
        """Delete every run of ``project``; returns how many."""
        return self._db.execute("DELETE FROM runs WHERE project = ?", (str(project),))


def open_history(settings: Settings, *, prefix: str = HISTORY_PREFIX) -> RedisHistory | SQLiteHistory:
    """The run history for these settings: Redis if ``REDIS_URL`` is set, else ``{DATA_DIR}/history.sqlite3``."""
    if settings.redis_url:
        link = spool.redis_link(settings)
        return RedisHistory(link.connection, prefix=prefix, link=link)
    return SQLiteHistory(sqlite_path(settings, "history.sqlite3"))


def with_deltas(runs_newest_first: list[dict]) -> list[dict]:
    """Copies of the runs with ``delta``: score minus the previous run of the same series (``None`` for the first).

    Example::

        >>> [r["delta"] for r in with_deltas([{"version": "a", "score": 0.7},
        ...     {"version": "a", "score": 0.5}, {"version": "b", "score": 0.9}])]
        [0.19999999999999996, None, None]
    """
    out: list[dict] = []
    last: dict[str, float | None] = {}
    for run in reversed(runs_newest_first):
        key = series_name(run)
        prev, score = last.get(key), run.get("score")
        delta = score - prev if isinstance(score, (int, float)) and isinstance(prev, (int, float)) else None
        out.append({**run, "delta": delta})
        if score is not None:
            last[key] = score
    out.reverse()
    return out
