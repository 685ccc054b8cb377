"""Data Manager tabs ("views") of the Label Studio client: a mixin of ``core.labelstudio.LabelStudioClient``.

Split out of ``core/labelstudio.py`` (which it keeps under 400 lines); the methods use the
client's ``_call`` (retries, one clear ``LabelStudioError``) and its SDK.  A tab is
``{"id", "title", "data"}``; ``data`` holds Label Studio's tab settings (``filters``,
``ordering``, ``hiddenColumns``, ``title``) plus any keys of ours, which Label Studio keeps.
"""
from __future__ import annotations

from typing import Any, Callable

DEFAULT_TAB = "Default"  # the title Label Studio's Data Manager gives the tab it creates itself


class DataViewsMixin:
    """Data Manager tabs and columns (see the module docstring)."""

    sdk: Any
    _call: Callable[..., Any]
    _raw: Callable[..., Any]

    def columns(self, project_id: int) -> list[dict]:
        """The Data Manager's columns of a project (``GET /api/dm/columns``)."""
        data = self._call(f"reading Data Manager columns of project {project_id}", self._raw,
                          "GET", "api/dm/columns", params={"project": int(project_id)})
        return list((data or {}).get("columns", []))

    def views(self, project_id: int) -> list[dict]:
        """The Data Manager tabs of a project as ``{"id", "title", "data"}``, in Label Studio's order."""
        views = self._call(f"listing Data Manager tabs of project {project_id}", self.sdk.views.list,
                           project=int(project_id))
        return [{"id": v.id, "title": (v.data or {}).get("title"), "data": v.data or {}} for v in views]

    def create_view(self, project_id: int, title: str, data: dict) -> int:
        """Create the Data Manager tab ``title``; return its id."""
        view = self._call(f"creating Data Manager tab '{title}'", self.sdk.views.create, project=int(project_id),
                          data={**data, "title": title})
        return view.id

    def update_view(self, project_id: int, view_id: int, title: str, data: dict) -> int:
        """Replace the settings (and title) of the tab ``view_id``; return its id."""
        self._call(f"updating Data Manager tab '{title}'", self.sdk.views.update, str(view_id),
                   project=int(project_id), data={**data, "title": title})
        return view_id

    def upsert_view(self, project_id: int, title: str, data: dict) -> int:
        """Create the Data Manager tab ``title`` or update it in place; return its id."""
        for view in self.views(project_id):
            if view["title"] == title:
                return self.update_view(project_id, view["id"], title, data)
        return self.create_view(project_id, title, data)

    def ensure_default_view(self, project_id: int, views: list[dict] | None = None) -> int | None:
        """Create a plain "Default" tab (no filter) when the project has no tab at all; return its id, or None.

        Label Studio creates "Default" itself the first time someone opens the Data Manager; a tab
        created through the API before that becomes the project's only tab.
        """
        if (self.views(project_id) if views is None else views):
            return None
        return self.create_view(project_id, DEFAULT_TAB, {})

    def view_tasks(self, project_id: int, view_id: int) -> list[dict]:
        """Tasks of a Data Manager tab in its order, as ``{"id", "predictions_score"}``."""
        def run():
            return [{"id": t.id, "predictions_score": getattr(t, "predictions_score", None)}
                    for t in self.sdk.tasks.list(project=int(project_id), view=int(view_id), fields="all")]
        return self._call(f"listing tasks of Data Manager tab {view_id}", run)
