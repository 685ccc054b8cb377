"""``/predict`` overflow: tasks the deadline leaves over are handed to a run of exactly those tasks.

Label Studio waits 100 s for ``/predict``; the predictor stops starting tasks at
``PREDICT_DEADLINE``.  The tasks it could not finish (outcome ``deadline``) are not lost:
:meth:`Overflow.hand_off` marks them *in progress* for (project, version) and starts a run of
exactly those tasks -- chunk jobs on the RQ workers with ``REDIS_URL``, on the backend's embedded
queue without -- which writes their predictions into Label Studio when done.  The reply answers
in time with one entry per task (``[]`` for the handed-off ones).  While a task is marked, a later
``/predict`` answers ``[]`` for it without calling the model (:meth:`Overflow.held`), so it is
never predicted twice; the chunk that writes it removes the mark (and the run's lock-and-recheck
never writes a second prediction of the version).
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def task_id(task: Any) -> int | None:
    """A task's integer id (None for anything else).

    >>> task_id({"id": 4}), task_id({"id": "x"}), task_id(7)
    (4, None, None)
    """
    tid = task.get("id") if isinstance(task, dict) else None
    return tid if isinstance(tid, int) and not isinstance(tid, bool) else None


class Overflow:
    """Marks and hands off overflow tasks.  ``sink`` has ``start_run(project, version, ids, source)``."""

    def __init__(self, store, sink):
        self.store, self.sink = store, sink

    def held(self, project: str | None, version: str, tasks: list) -> set[int]:
        """The ids among ``tasks`` an overflow run is writing now (answer ``[]``, call nothing)."""
        ids = [i for t in tasks if (i := task_id(t)) is not None]
        if not project or not ids:
            return set()
        try:
            return self.store.marked(project, version, ids)
        except Exception as exc:  # a store outage must not fail /predict: predict them instead
            log.warning("overflow: could not read in-progress markers (%s: %s)", type(exc).__name__, exc)
            return set()

    def hand_off(self, project: str | None, version: str, tasks: list[dict]) -> str | None:
        """Mark ``tasks`` in progress and start a run of them; returns the run id (None: not handed off)."""
        ids = [t["id"] for t in tasks]
        if not project or not ids or not str(project).isdigit():
            return None
        try:
            self.store.mark(str(project), version, ids)
            run_id = self.sink.start_run(int(project), version, tasks, "overflow")
        except Exception as exc:
            log.warning("overflow: %d task(s) of project %s not handed off (%s: %s); Label Studio's next "
                        "request predicts them", len(ids), project, type(exc).__name__, exc)
            try:
                self.store.unmark(str(project), version, ids)
            except Exception:
                pass
            return None
        log.info("overflow: %d task(s) of project %s past PREDICT_DEADLINE handed to run %s (%s)",
                 len(ids), project, run_id, getattr(self.sink, "mode", "queue"))
        return run_id
