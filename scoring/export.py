"""Read a Label Studio JSON export and pick each task's two sides.

A snapshot export with full predictions is needed (the community export lists
predictions as ids only)::

    ls.projects.exports.create(pid, title=..., serialization_options={"predictions": {"only_id": False}})
    ls.projects.exports.download(pid, export_id, export_type="JSON")
"""
from __future__ import annotations

import json
import sys

from core.errors import ExportError

GROUND_TRUTH = "ground_truth"   # the reference that means "the task's ground-truth annotation" (not a model version)
SNAPSHOT_HINT = ("take a snapshot export with full predictions "
                 "(serialization_options={'predictions': {'only_id': False}}, export_type JSON)")


def load_export(path: str) -> list[dict]:
    """Load and check a Label Studio JSON export; return its task dicts.

    Raises ``ExportError`` (one line) when the file cannot be read, is not JSON,
    is nested too deeply for the JSON parser (Python's recursion limit, about 1,000
    levels; a real export is about 10 deep), or is not a JSON export of tasks with
    full predictions.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ExportError(f"cannot read export file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ExportError(f"{path} is not JSON{where}: export the project as JSON from Label Studio") from None
    except RecursionError:
        raise ExportError(f"{path} is nested too deeply to read (lists or objects nested near Python's limit of "
                          f"{sys.getrecursionlimit()} levels): it is not a Label Studio export") from None
    check_export(data, path)
    return data


def check_export(data, source: str = "export") -> None:
    """Raise ``ExportError`` unless ``data`` looks like a Label Studio JSON export."""
    if not isinstance(data, list):
        raise ExportError(f"{source} is not a Label Studio JSON export: expected a list of tasks, "
                          f"found a JSON {type(data).__name__}")
    if not data:
        raise ExportError(f"{source} contains no tasks")
    for i, task in enumerate(data):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ExportError(f"{source} is not a Label Studio JSON export: item {i} has no 'data' object "
                              "(use the JSON export format, not JSON_MIN or CSV)")
        for key in ("annotations", "predictions"):
            items = task.get(key, [])
            if not isinstance(items, list):
                raise ExportError(f"{source}: task {task.get('id', i)} has '{key}' that is not a list")
            for item in items:
                if not isinstance(item, dict):
                    if key == "predictions":
                        raise ExportError(f"{source} lists predictions as ids only: {SNAPSHOT_HINT}")
                    raise ExportError(f"{source}: task {task.get('id', i)} has an annotation that is not an object")


def _newest_key(item: dict):
    return (str(item.get("updated_at") or item.get("created_at") or ""), item.get("id") or 0)


def ground_truth(task: dict) -> dict | None:
    """The task's annotation flagged ``ground_truth: true`` (not cancelled), else None.

    >>> ground_truth({"annotations": [{"id": 1, "result": []}, {"id": 2, "ground_truth": True, "result": []}]})["id"]
    2
    """
    best = None
    for ann in task.get("annotations") or ():
        if ann.get("ground_truth") is True and not ann.get("was_cancelled"):
            if best is None or _newest_key(ann) > _newest_key(best):
                best = ann
    return best


def prediction_of(task: dict, version: str) -> dict | None:
    """The newest prediction of ``model_version == version`` on the task, else None.

    >>> t = {"predictions": [{"id": 1, "model_version": "v1", "created_at": "2026-01-01T00:00:00Z"},
    ...                      {"id": 7, "model_version": "v1", "created_at": "2026-02-01T00:00:00Z"}]}
    >>> prediction_of(t, "v1")["id"], prediction_of(t, "v2")
    (7, None)
    """
    best = None
    for p in task.get("predictions") or ():
        if p.get("model_version") == version:
            if best is None or _newest_key(p) > _newest_key(best):
                best = p
    return best


def versions_in(tasks: list[dict]) -> list[str]:
    """Sorted model versions that have at least one prediction in the tasks."""
    seen = set()
    for t in tasks:
        for p in t.get("predictions") or ():
            if isinstance(p, dict) and p.get("model_version") is not None:
                seen.add(str(p.get("model_version")))
    return sorted(seen)
