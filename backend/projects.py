"""Which prompt version each Label Studio project uses.

Label Studio sends the ML backend's ``extra_params`` only to ``/setup``; the
``/predict`` call that follows names the project (``"<id>.<created_ts>"``) but
not the version.  ``/setup`` therefore records ``project -> version id`` here
and ``/predict`` reads it back.  The map lives in Redis when ``REDIS_URL`` is
set (shared by every gunicorn worker and the RQ worker), else in a SQLite file
under ``DATA_DIR`` (shared by processes on one host).  A project never set up
falls back to the default version.
"""
from __future__ import annotations

import os
import sqlite3
import threading

from core.settings import Settings

_REDIS_KEY = "llm-prelabel:project-versions"


def project_id(project: object) -> str | None:
    """``"12.1700000000"`` -> ``"12"`` (Label Studio's ``<id>.<created timestamp>``)."""
    if project is None or project == "":
        return None
    return str(project).split(".", 1)[0]


class RedisProjectVersions:
    def __init__(self, url: str):
        import redis

        self._r = redis.Redis.from_url(url)

    def set(self, project: str, version_id: str) -> None:
        self._r.hset(_REDIS_KEY, project, version_id)

    def get(self, project: str) -> str | None:
        v = self._r.hget(_REDIS_KEY, project)
        return v.decode() if v is not None else None


class SQLiteProjectVersions:
    """The map in one SQLite file; one connection per process, opened once (autocommit, so a
    version set by another process is seen on the next read)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS project_versions (project TEXT PRIMARY KEY, version TEXT NOT NULL)")

    def set(self, project: str, version_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO project_versions(project, version) VALUES(?, ?) "
                "ON CONFLICT(project) DO UPDATE SET version = excluded.version",
                (project, version_id),
            )

    def get(self, project: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT version FROM project_versions WHERE project = ?", (project,)).fetchone()
        return row[0] if row else None


def open_project_versions(settings: Settings):
    if settings.redis_url:
        return RedisProjectVersions(settings.redis_url)
    return SQLiteProjectVersions(os.path.join(settings.data_dir, "projects.sqlite3"))
