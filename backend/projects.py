"""Which prompt version each Label Studio project uses.

Label Studio sends the ML backend's ``extra_params`` only to ``/setup``; the
``/predict`` call that follows names the project (``"<id>.<created_ts>"``) but
not the version.  ``/setup`` therefore records ``project -> version id`` here
and ``/predict`` reads it back.  The map lives in Redis when ``REDIS_URL`` is
set (shared by every gunicorn worker and the RQ worker), else in a SQLite file
under ``DATA_DIR`` (shared by processes on one host).  A project never set up
falls back to the default version.  Redis key: ``llm-prelabel:project-versions``
(a hash; ``core.stores``).

Redis down (``core.spool``): the map is cached in the process (write-through).  A
``/setup`` that cannot reach Redis is kept in the cache and in the host's spool (so the
other gunicorn workers see it too) and written to Redis when it is back; a read that
cannot reach Redis answers from the spool, else from the cache.  While a setting of a
project waits in the spool, newer settings of that project queue behind it (the newest wins).
"""
from __future__ import annotations

from core import spool
from core.settings import Settings
from core.stores import PROJECT_VERSIONS_KEY, SQLiteFile, redis_connection, sqlite_path

_REDIS_KEY = PROJECT_VERSIONS_KEY
KIND = "project"   # spool entries: key = project id, payload {"key", "project", "version"}


def _replay_settings(connection, _settings, payloads: list[dict]) -> None:
    """Spool replay: write the settings made while Redis was down (in order: the newest wins)."""
    pipe = connection.pipeline(transaction=False)
    for p in payloads:
        pipe.hset(p["key"], p["project"], p["version"])
    pipe.execute()


spool.KINDS[KIND] = spool.Kind("project setting(s)", _replay_settings)


def project_id(project: object) -> str | None:
    """``"12.1700000000"`` -> ``"12"`` (Label Studio's ``<id>.<created timestamp>``)."""
    if project is None or project == "":
        return None
    return str(project).split(".", 1)[0]


class RedisProjectVersions:
    """The map in a Redis hash; with ``link`` (``core.spool.RedisLink``) it rides out an outage."""

    def __init__(self, url: str | None, link: spool.RedisLink | None = None):
        self._link = link
        self._r = link.connection if link else redis_connection(url, "the project map")
        self._cache: dict[str, str] = {}

    def set(self, project: str, version_id: str) -> None:
        self._cache[project] = version_id
        if self._link is None:
            self._r.hset(_REDIS_KEY, project, version_id)
            return
        item = [(project, {"key": _REDIS_KEY, "project": project, "version": version_id})]
        if self._link.spool.pending(KIND, project) is not None:   # an older setting waits: queue behind it
            self._link.keep(KIND, item)
            return
        self._link.write_or_keep(KIND, item, lambda: self._r.hset(_REDIS_KEY, project, version_id))

    def get(self, project: str) -> str | None:
        if self._link is None:
            v = self._r.hget(_REDIS_KEY, project)
            return v.decode() if v is not None else None
        waiting = self._link.spool.pending(KIND, project)
        if waiting is not None:
            return waiting["version"]
        try:
            v = self._link.call(self._r.hget, _REDIS_KEY, project)
        except spool.REDIS_DOWN:
            return self._cache.get(project)
        if v is None:
            self._cache.pop(project, None)
            return None
        self._cache[project] = v.decode()
        return self._cache[project]


class SQLiteProjectVersions:
    """The map in one SQLite file; one connection per process, opened once (autocommit, so a
    version set by another process is seen on the next read)."""

    def __init__(self, path: str):
        self._db = SQLiteFile(
            path, "CREATE TABLE IF NOT EXISTS project_versions (project TEXT PRIMARY KEY, version TEXT NOT NULL)",
            what="the project map", wal=False)

    def set(self, project: str, version_id: str) -> None:
        self._db.execute(
            "INSERT INTO project_versions(project, version) VALUES(?, ?) "
            "ON CONFLICT(project) DO UPDATE SET version = excluded.version",
            (project, version_id),
        )

    def get(self, project: str) -> str | None:
        rows = self._db.query("SELECT version FROM project_versions WHERE project = ?", (project,))
        return rows[0][0] if rows else None


def open_project_versions(settings: Settings):
    if settings.redis_url:
        return RedisProjectVersions(settings.redis_url, spool.redis_link(settings))
    return SQLiteProjectVersions(sqlite_path(settings, "projects.sqlite3"))
