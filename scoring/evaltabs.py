"""The Data Manager tabs of evaluations, and which evaluation is *active*.

Label Studio 1.23.2 shows one evaluation's scores at a time: the "Prediction score" column and
its sort follow the project's current model version (Settings → Annotation → Prelabeling) in
every tab, whatever the tab's filter.  A tab filtered to evaluation A while B is current would
show B's scores under A's title.  So the tabs say which evaluation they show, and only one can
show scores:

* the **active** evaluation (the project's model version is its name) has the tab
  ``"★ v2 vs GT"``: filtered to its predictions, lowest agreement first, the "Prediction score"
  column shown.  The distinguishing part comes first because the tab strip cuts titles at about
  12 characters ("★ v2-fewshot…");
* every other evaluation's tab is **inactive**: ``"☆ v1 vs GT (inactive)"``, filtered to its
  tasks but with the "Prediction score" column hidden and no score sort, so it cannot show
  another evaluation's scores as its own.

:func:`activate` switches the active evaluation (``python -m scoring activate``, ``score
--write-back --make-current``) and retitles every evaluation tab; ``activate(..., None)`` goes back
to the model version that was current before any evaluation -- the ML backend's, remembered in
the evaluation tabs (``BACKEND_KEY``) the first time an evaluation is made current.

A tab is recognised by the evaluation name in its data (``EVAL_KEY``), whatever its title, or by
the title earlier releases gave it ("Agreement: v2 vs ground_truth"), which is then replaced.
A project without any tab first gets a plain "Default" one (``ensure_default_view``): the tab a
person expects to land on when opening the Data Manager.

Switching the model version by hand in Label Studio's settings is not seen here: the next
``activate`` or write-back retitles the tabs after the project's current model version.
"""
from __future__ import annotations

from typing import Any

from core.labelstudio import LabelStudioClient

EVAL_KEY = "llm_prelabel_evaluation"           # tab data: the evaluation's model version
BACKEND_KEY = "llm_prelabel_backend_version"   # tab data: the model version current before any evaluation
CURRENT_MARK = "llm_prelabel_evaluation_is_current"  # tab data: survives a crash in a bulk rewrite (writeback)
SCORE_COLUMN = "predictions_score"
SHOWN_COLUMNS = (SCORE_COLUMN, "predictions_model_versions")
LEGACY_PREFIX = "Agreement: "


def evaluation_name(version: str, against: str) -> str:
    """The model version of an evaluation's predictions.

    >>> evaluation_name("v-good", "ground_truth")
    'eval(v-good vs ground_truth)'
    """
    return f"eval({version} vs {against})"


def parse_evaluation(name: str | None) -> tuple[str, str] | None:
    """``(version, reference)`` of an evaluation name, or None for any other model version.

    >>> parse_evaluation("eval(v-good vs ground_truth)"), parse_evaluation("my-backend")
    (('v-good', 'ground_truth'), None)
    """
    if not name or not name.startswith("eval(") or not name.endswith(")") or " vs " not in name:
        return None
    version, against = name[5:-1].rsplit(" vs ", 1)
    return version, against


def short_reference(against: str) -> str:
    """``GT`` for ground truth, else the reference version itself.

    >>> short_reference("ground_truth"), short_reference("v1")
    ('GT', 'v1')
    """
    return "GT" if against == "ground_truth" else against


def tab_title(version: str, against: str, active: bool = True) -> str:
    """Title of an evaluation's Data Manager tab: version first (titles are cut at about 12 characters).

    >>> tab_title("v-good", "ground_truth"), tab_title("v2", "v1", active=False)
    ('★ v-good vs GT', '☆ v2 vs v1 (inactive)')
    """
    if active:
        return f"★ {version} vs {short_reference(against)}"
    return f"☆ {version} vs {short_reference(against)} (inactive)"


def evaluation_of_tab(view: dict) -> str | None:
    """The evaluation a tab belongs to (from its data, or the title of earlier releases), or None.

    >>> evaluation_of_tab({"title": "Agreement: v2 vs ground_truth", "data": {}})
    'eval(v2 vs ground_truth)'
    >>> evaluation_of_tab({"title": "★ v2 vs GT", "data": {EVAL_KEY: "eval(v2 vs ground_truth)"}})
    'eval(v2 vs ground_truth)'
    """
    name = (view.get("data") or {}).get(EVAL_KEY)
    if name:
        return str(name)
    title = view.get("title") or ""
    if title.startswith(LEGACY_PREFIX) and " vs " in title:
        version, against = title[len(LEGACY_PREFIX):].rsplit(" vs ", 1)
        return evaluation_name(version, against)
    return None


def evaluation_tabs(views: list[dict]) -> dict[str, dict]:
    """``{evaluation name: tab}`` of a project's tabs (the first tab of each evaluation)."""
    out: dict[str, dict] = {}
    for view in views:
        name = evaluation_of_tab(view)
        if name and name not in out:
            out[name] = view
    return out


def remembered_backend(views: list[dict]) -> str | None:
    """The model version that was current before any evaluation, as the evaluation tabs remember it."""
    for view in evaluation_tabs(views).values():
        value = view["data"].get(BACKEND_KEY)
        if value is not None:
            return str(value)
    return None


def hidden_columns(client: LabelStudioClient, project_id: int, shown: tuple[str, ...]) -> list[str]:
    """The columns hidden by default in the Data Manager, except ``shown`` (and the data columns)."""
    hidden = []
    for col in client.columns(project_id):
        vis = col.get("visibility_defaults")
        if not vis or col.get("id") == "data" or col.get("id") in shown:
            continue
        if not vis.get("explore", True):
            hidden.append("tasks:" + ("data." if col.get("parent") == "data" else "") + str(col["id"]))
    return hidden


def tab_data(client: LabelStudioClient, project_id: int, name: str, active: bool,
             backend: str | None = None) -> dict:
    """Settings of an evaluation's tab: filtered to its predictions; when active lowest agreement first with the
    score column, when inactive neither (the column would show the active evaluation's scores)."""
    if active:
        hidden = hidden_columns(client, project_id, SHOWN_COLUMNS)
    else:
        hidden = hidden_columns(client, project_id, SHOWN_COLUMNS[1:]) + [f"tasks:{SCORE_COLUMN}"]
    data: dict[str, Any] = {
        # the value is a list: Label Studio iterates it (a bare string would match letter by letter)
        "filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:predictions_model_versions",
                                                      "operator": "contains", "type": "List", "value": [name]}]},
        # inactive: by task id (an empty ordering would not replace the score sort: Label Studio keeps the old one)
        "ordering": [f"tasks:{SCORE_COLUMN}"] if active else ["tasks:id"],
        "hiddenColumns": {"explore": hidden, "labeling": list(hidden)},
        EVAL_KEY: name,
        CURRENT_MARK: bool(active),
    }
    if backend is not None:
        data[BACKEND_KEY] = backend
    return data


def refresh_tabs(client: LabelStudioClient, project_id: int, current: str | None, *,
                 backend: str | None = None, ensure: str | None = None) -> dict[str, dict]:
    """Title and set up every evaluation tab after ``current`` (the project's model version now).

    ``ensure`` is an evaluation whose tab is created when missing; ``backend`` (when known) is
    remembered in every tab.  A project without any tab first gets a "Default" one.  Returns
    ``{evaluation name: {"id", "title", "active"}}``.
    """
    pid = int(project_id)
    views = client.views(pid)
    client.ensure_default_view(pid, views)
    tabs = evaluation_tabs(views)
    backend = backend if backend is not None else remembered_backend(views)
    names = list(tabs) + ([ensure] if ensure and ensure not in tabs else [])
    out = {}
    for name in names:
        parsed = parse_evaluation(name)
        if parsed is None:
            continue
        active = name == current
        title, data = tab_title(*parsed, active=active), tab_data(client, pid, name, active, backend)
        view = tabs.get(name)
        if view is None:
            view_id = client.create_view(pid, title, data)
        elif view["title"] != title or {k: view["data"].get(k) for k in data} != data:
            view_id = client.update_view(pid, view["id"], title, data)
        else:
            view_id = view["id"]
        out[name] = {"id": view_id, "title": title, "active": active}
    return out


_ASK = object()


def activate(client: LabelStudioClient, project_id: int, evaluation: str | None, *, previous: Any = _ASK) -> dict:
    """Make ``evaluation`` the project's current model version and retitle every evaluation tab;
    ``None``: go back to the model version current before any evaluation (the ML backend's).

    Returns ``{"current", "previous", "backend_model_version", "tabs": {name: {"id", "title", "active"}}}``.
    The backend's version is remembered the first time the current version is not an evaluation.
    ``previous`` is the project's model version if the caller read it already (the write-back reads it
    before a bulk rewrite, which may clear it).
    """
    pid = int(project_id)
    if previous is _ASK:
        previous = client.project(pid)["model_version"] or None
    backend = remembered_backend(client.views(pid))
    if previous and parse_evaluation(previous) is None:
        backend = previous            # an ML backend's (or any non-evaluation) version: remember it
    elif previous is None and backend is None:
        backend = ""                  # nothing was current, and nothing is remembered: "none"
    target = evaluation if evaluation is not None else (backend or None)
    if (client.project(pid)["model_version"] or None) != (target or None):
        client.set_model_version(pid, target)
    tabs = refresh_tabs(client, pid, target, backend=backend, ensure=evaluation)
    return {"current": target, "previous": previous, "backend_model_version": backend or None, "tabs": tabs}
