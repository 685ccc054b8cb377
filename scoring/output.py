"""What the commands write besides their printed summary: the JSON report and the HTML report.

Shared by ``evaluate``, ``score`` and ``compare`` (a command never imports another
command).  Both writers turn a file-system problem into one ``ScoringError`` line.
A command calls :func:`check_outputs` with all its output paths *before* it does
anything else, so a bad ``--html`` never leaves a ``--json`` written (or agreement
written back into Label Studio) behind an error.

    check_outputs({"--json": "out/v2.json", "--html": "out/v2.html"})
    write_json("out/v2.json", report)
    write_html("out/v2.html", report, settings)                                  # the project's history, task links
    write_html("out/cmp.html", best, settings, comparison=rows, tolerance=0.03)  # plus quality vs cost
"""
from __future__ import annotations

import json
import logging
import os

from core.errors import ScoringError
from core.settings import Settings
from scoring.cost import TOLERANCE


def quiet_http() -> None:
    """Keep httpx at warnings: one log line per HTTP request to Label Studio is noise on a terminal."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def output_problem(path: str) -> str | None:
    """Why a file cannot be written at ``path`` (its missing parents created), or None when it can.

    >>> output_problem("/"), output_problem("/proc/version/x.json")
    ('it is a directory', '/proc/version is not a directory')
    """
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        return "it is a directory"
    if os.path.lexists(path):
        return None if os.access(path, os.W_OK) else "permission denied"
    parent = os.path.dirname(path) or "."
    while not os.path.lexists(parent):  # the nearest existing ancestor: where the missing ones would be created
        parent = os.path.dirname(parent) or "."
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def check_outputs(outputs: dict[str, str | None]) -> None:
    """Check every output path (``{"--json": path, "--html": None, ...}``) before anything is written.

    ``ScoringError`` naming the option and the path when one cannot be written (a directory, a
    parent that is a file, no permission) or when two options name the same file.
    """
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if not path:
            continue
        problem = output_problem(path)
        if problem:
            raise ScoringError(f"cannot write {option} {path}: {problem}; nothing was written")
        real = os.path.realpath(path)
        if real in seen:
            raise ScoringError(f"{seen[real]} and {option} name the same file {path}; give each its own")
        seen[real] = option


def write_json(path: str, data) -> None:
    """Write ``data`` as JSON (``ScoringError`` when the file cannot be written)."""
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
    except OSError as exc:
        raise ScoringError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_html(path: str, report: dict, settings: Settings, *, comparison: list[dict] | None = None,
               tolerance: float = TOLERANCE) -> None:
    """Write the HTML report (``ScoringError`` when the file cannot be written).

    When the report names its project: the project's score over time from the run history,
    and links to the tasks in Label Studio (with ``LABEL_STUDIO_URL`` set).  ``comparison``
    rows (``scoring.cost.compare_table``) add the quality-vs-cost section, which names the
    cheapest version within ``tolerance`` of the best score.
    """
    from core.labelstudio import label_studio_task_url
    from scoring.history import open_history
    from scoring.report_html import ReportOptions, render_html

    project = report.get("project")
    task_url = (label_studio_task_url(settings.label_studio_url, project)
                if settings.label_studio_url and project is not None else None)
    history = open_history(settings).list(project) if project is not None else None
    options = ReportOptions(comparison=comparison, task_url=task_url, history=history, secrets=settings.secrets(),
                            tolerance=tolerance)
    try:
        render_html(report, path, options)
    except OSError as exc:
        raise ScoringError(f"cannot write {path}: {exc.strerror or exc}") from None
