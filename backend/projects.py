"""Which prompt version each Label Studio project uses.

Label Studio sends the ML backend's ``extra_params`` only to ``/setup``; the
``/predict`` call that follows names the project (``"<id>.<created_ts>"``) but
not the version.  ``/setup`` therefore records ``project -> version id`` here
and ``/predict`` reads it back.  The map lives in Redis when ``REDIS_URL`` is
set (shared by every gunicorn worker and the RQ worker), else in a SQLite file
under ``DATA_DIR`` (shared by processes on one host).  A project never set up
falls back to the default version.  Redis key: ``llm-prelabel:project-versions``
(a hash; ``core.stores``).
"""
from __future__ import annotations

from core.settings import Settings
from core.stores import PROJECT_VERSIONS_KEY, SQLiteFile, redis_connection, sqlite_path

_REDIS_KEY = PROJECT_VERSIONS_KEY


def project_id(project: object) -> str | None:
    """``"12.1700000000"`` -> ``"12"`` (Label Studio's ``<id>.<created timestamp>``)."""
    if project is None or project == "":
        return None
    return str(project).split(".", 1)[0]


class RedisProjectVersions:
    def __init__(self, url: str):
        self._r = redis_connection(url, "the project map")

    def set(self, project: str, version_id: str) -> None:
        self._r.hset(_REDIS_KEY, project, version_id)

    def get(self, project: str) -> str | None:
        v = self._r.hget(_REDIS_KEY, project)
        return v.decode() if v is not None else None


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
        return RedisProjectVersions(settings.redis_url)
    return SQLiteProjectVersions(sqlite_path(settings, "projects.sqlite3"))
