"""Calibration maps: raw confidence -> probability that the task's answer agrees with ground truth.

``python -m scoring calibrate`` fits a map per (version, project) on the project's ground truth
(:mod:`scoring.calibration`) and stores it here; the backend reads it (at most
:data:`REFRESH_S` seconds old) and writes ``score = map(raw task confidence)``.  A map is a
monotone piecewise-linear function given by its knots (isotonic regression's thresholds, or a
logistic curve sampled on a grid, or the identity)::

    >>> m = CalibrationMap(xs=[0.2, 0.8], ys=[0.1, 0.9], method="isotonic", n=120)
    >>> m(0.5), m(0.0), m(1.0)
    (0.5, 0.1, 0.9)

Where the maps live (the same choice as the usage ledger):

* ``REDIS_URL`` set: hash ``llm-prelabel:calibration``, field ``<version>\\x1f<project>`` -> the map as JSON;
* otherwise ``{DATA_DIR}/calibration.sqlite3``, table ``calibration(version, project, map)``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.stores import SQLiteFile, key, redis_connection, sqlite_path

log = logging.getLogger(__name__)
CALIBRATION_KEY = key("calibration")
REFRESH_S = 30.0  # the backend re-reads a map at most this often
_SCHEMA = """CREATE TABLE IF NOT EXISTS calibration (
    version TEXT NOT NULL, project TEXT NOT NULL, map TEXT NOT NULL, PRIMARY KEY (version, project));"""


@dataclass
class CalibrationMap:
    """A monotone map from raw confidence to P(agrees with ground truth), piecewise linear between knots."""

    xs: list[float]
    ys: list[float]
    method: str = "identity"      # isotonic | logistic | identity
    n: int = 0                    # ground-truth tasks it was fitted on
    fitted_at: float = field(default_factory=time.time)
    report: dict = field(default_factory=dict)  # what calibrate measured (AUROC, ECE before/after, ...)

    def __call__(self, raw: float) -> float:
        if not self.xs:
            return float(raw)
        return float(np.interp(raw, self.xs, self.ys))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> "CalibrationMap":
        return cls(**json.loads(text))


def _field(version: str, project: Any) -> str:
    return f"{version}\x1f{'' if project is None else project}"


class CalibrationStore:
    """Read and write maps keyed by (version, project), in Redis or SQLite (see the module doc)."""

    def __init__(self, settings):
        self.settings = settings
        self._redis = redis_connection(settings, "calibration maps", timeout=2.0) if settings.redis_url else None
        self._db = None if self._redis is not None else SQLiteFile(
            sqlite_path(settings, "calibration.sqlite3"), _SCHEMA, what="the calibration maps")

    def get(self, version: str, project: Any) -> CalibrationMap | None:
        if self._redis is not None:
            raw = self._redis.hget(CALIBRATION_KEY, _field(version, project))
        else:
            assert self._db is not None
            rows = self._db.query("SELECT map FROM calibration WHERE version = ? AND project = ?",
                                  (version, "" if project is None else str(project)))
            raw = rows[0][0] if rows else None
        return CalibrationMap.from_json(raw) if raw else None

    def put(self, version: str, project: Any, cmap: CalibrationMap) -> None:
        if self._redis is not None:
            self._redis.hset(CALIBRATION_KEY, _field(version, project), cmap.to_json())
            return
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO calibration (version, project, map) VALUES (?, ?, ?)",
                         (version, "" if project is None else str(project), cmap.to_json()))

    def delete(self, version: str, project: Any) -> None:
        if self._redis is not None:
            self._redis.hdel(CALIBRATION_KEY, _field(version, project))
        elif self._db is not None:
            self._db.execute("DELETE FROM calibration WHERE version = ? AND project = ?",
                             (version, "" if project is None else str(project)))


class CalibrationCache:
    """The backend's view of the maps: each (version, project) re-read at most every ``refresh`` seconds;
    a store that cannot be read means "no map" (raw confidence is written), with one warning."""

    def __init__(self, settings, refresh: float = REFRESH_S, clock=time.monotonic):
        self.settings, self.refresh, self.clock = settings, refresh, clock
        self._store: CalibrationStore | None = None
        self._seen: dict[tuple, tuple[float, CalibrationMap | None]] = {}
        self._lock = threading.Lock()

    def get(self, version: str, project: Any) -> CalibrationMap | None:
        k = (version, None if project is None else str(project))
        with self._lock:
            hit = self._seen.get(k)
            if hit is not None and self.clock() - hit[0] < self.refresh:
                return hit[1]
            try:
                if self._store is None:
                    self._store = CalibrationStore(self.settings)
                cmap = self._store.get(*k)
            except Exception as exc:
                log.warning("calibration maps unreadable (%s: %s); raw confidence is written",
                            type(exc).__name__, exc)
                cmap = None
            self._seen[k] = (self.clock(), cmap)
            return cmap
