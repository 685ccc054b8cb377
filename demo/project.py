"""The demo's Label Studio project: created once from the shipped review dataset, reused afterwards.

A project holds ``n`` reviews (``fakellm.dataset.make_tasks``); the first ``ground_truth`` of them
are imported *with* their annotation, which Label Studio marks as ground truth (annotations
imported inside tasks default to ``ground_truth: true``); the rest come without labels, as in
a real project.  The ML backend is connected as the project's model with the version in
``extra_params`` as a JSON string (a dict shows as "[object Object]" in Label Studio's edit box).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from fakellm.dataset import LABEL_CONFIG, make_tasks


@dataclass(frozen=True)
class ProjectSpec:
    title: str
    tasks: int
    ground_truth: int


def import_rows(n: int, ground_truth: int) -> list[dict]:
    """The import payload: ``ground_truth`` tasks with their annotation, then the rest without.

    >>> rows = import_rows(5, 2)
    >>> [("annotations" in r) for r in rows]
    [True, True, False, False, False]
    """
    rows = []
    for i, task in enumerate(make_tasks(n)):
        row = {"data": task["data"]}
        if i < ground_truth:
            row["annotations"] = [{"result": task["annotations"][0]["result"]}]
        rows.append(row)
    return rows


def find_or_create(ls, spec: ProjectSpec) -> tuple[int, bool]:
    """(project id, created?): the project titled ``spec.title``, else a new one with its tasks imported."""
    for project in ls.projects.list():
        if project.title == spec.title:
            return project.id, False
    project = ls.projects.create(title=spec.title, label_config=LABEL_CONFIG,
                                 description="llm-prelabel demo: customer reviews (sentiment, entities, summary)")
    ls.projects.import_tasks(id=project.id, request=import_rows(spec.tasks, spec.ground_truth))
    return project.id, True


def connect_backend(ls, project_id: int, url: str, version: str) -> str:
    """Connect the ML backend at ``url`` as the project's model for ``version`` (replacing earlier
    connections of the demo, whose backend port may have changed); returns the connection's title."""
    for old in ls.ml.list(project=project_id):
        ls.ml.delete(id=old.id)
    title = f"LLM pre-labels: {version}"
    ls.ml.create(project=project_id, url=url, title=title, extra_params=json.dumps({"version": version}),
                 is_interactive=False)
    return title
