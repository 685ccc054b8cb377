"""Which evaluation the Data Manager shows (issue 12): active and inactive tabs, the way back, the Default tab.

Against a real Label Studio 1.23.2, where the "Prediction score" column and its sort follow the
project's current model version in every tab whatever its filter.
"""
from __future__ import annotations

import pytest

from core.dataviews import DEFAULT_TAB
from core.labelstudio import LabelStudioClient
from scoring.cli import main
from scoring.engine import evaluate
from scoring.evaltabs import BACKEND_KEY, EVAL_KEY, evaluation_tabs
from scoring.writeback import WriteOptions, write_back
from tests.fixtures.ls_export import make_fixture
from tests.test_ui_browser import chrome  # noqa: F401, F811  (the fixture)

pytestmark = pytest.mark.labelstudio
CHEAP, GOOD = "eval(v-cheap vs ground_truth)", "eval(v-good vs ground_truth)"
BACKEND = "v-good"   # a model version the ML backend wrote (Label Studio accepts only existing ones)


def score_and_write(client, pid, version, **kw):
    tasks, config = client.pull_project(pid, progress=False)
    report = evaluate(tasks, config, version, "ground_truth")
    return report, write_back(client, pid, report, tasks, WriteOptions(**kw))


@pytest.fixture
def project(label_studio):
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="evaluation tabs")
    client = LabelStudioClient(label_studio.settings(), backoff=0.01)
    client.set_model_version(pid, BACKEND)   # as if an ML backend had pre-labelled with v-good
    return pid, ids, client


def tabs_by_title(client, pid) -> dict:
    return {v["title"]: v for v in client.views(pid)}


def test_second_evaluation_made_current_leaves_no_title_over_other_scores(project):
    """The reported bug: after v-good was made current, the v-cheap tab showed and sorted by v-good's scores."""
    pid, ids, client = project
    _, cheap = score_and_write(client, pid, "v-cheap", make_current=True)
    assert cheap["tab"]["title"] == "★ v-cheap vs GT" and cheap["tab"]["active"]
    good_report, good = score_and_write(client, pid, "v-good", make_current=True)
    assert client.project(pid)["model_version"] == GOOD
    assert good["tab"] == {"id": good["tab"]["id"], "title": "★ v-good vs GT", "active": True}

    tabs = tabs_by_title(client, pid)
    assert "★ v-cheap vs GT" not in tabs   # no tab claims to show v-cheap's scores any more
    inactive = tabs["☆ v-cheap vs GT (inactive)"]
    assert inactive["id"] == cheap["tab"]["id"] and inactive["data"][EVAL_KEY] == CHEAP
    # It cannot show v-good's scores as v-cheap's: no score column, no score sort.
    assert "tasks:predictions_score" in inactive["data"]["hiddenColumns"]["explore"]
    assert inactive["data"]["ordering"] == ["tasks:id"]
    active = tabs["★ v-good vs GT"]
    assert "tasks:predictions_score" not in active["data"]["hiddenColumns"]["explore"]
    assert active["data"]["ordering"] == ["tasks:predictions_score"]
    # The active tab's rows are v-good's agreement, lowest first.
    rows = client.view_tasks(pid, active["id"])
    expected = {t["id"]: t["score"] for t in good_report["tasks"] if t["score"] is not None}
    assert [r["predictions_score"] for r in rows] == pytest.approx(sorted(expected.values()))

    # Switching back to v-cheap swaps the titles again.
    done = client_activate(client, pid, CHEAP)
    assert {t["title"] for t in done["tabs"].values()} == {"★ v-cheap vs GT", "☆ v-good vs GT (inactive)"}


def client_activate(client, pid, name):
    from scoring.evaltabs import activate

    return activate(client, pid, name)


def test_the_way_back_is_the_backend_version_not_another_evaluation(project, label_studio, monkeypatch, capsys):
    pid, ids, client = project
    _, cheap = score_and_write(client, pid, "v-cheap", make_current=True)
    assert (cheap["previous_model_version"], cheap["backend_model_version"]) == (BACKEND, BACKEND)
    _, good = score_and_write(client, pid, "v-good", make_current=True)
    # The version before is v-cheap's evaluation; the way back is still the backend's.
    assert (good["previous_model_version"], good["backend_model_version"]) == (CHEAP, BACKEND)
    assert all(v["data"][BACKEND_KEY] == BACKEND for v in evaluation_tabs(client.views(pid)).values())

    from scoring.commands.score import _write_back_lines

    hint = "\n".join(_write_back_lines(good, pid))
    assert f"python -m scoring activate --project {pid} --backend (back to '{BACKEND}'" in hint
    assert CHEAP not in hint

    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["activate", "--project", str(pid), "--backend"]) == 0
    out = capsys.readouterr().out
    assert f"current model version '{BACKEND}' (was '{GOOD}')" in out
    assert client.project(pid)["model_version"] == BACKEND
    assert set(tabs_by_title(client, pid)) >= {"☆ v-cheap vs GT (inactive)", "☆ v-good vs GT (inactive)"}
    assert not any(t.startswith("★") for t in tabs_by_title(client, pid))

    # activate by version, then list
    assert main(["activate", "--project", str(pid), "--version", "v-cheap"]) == 0
    assert client.project(pid)["model_version"] == CHEAP and "★ v-cheap vs GT" in tabs_by_title(client, pid)
    capsys.readouterr()
    assert main(["activate", "--project", str(pid)]) == 0
    listing = capsys.readouterr().out
    assert f"{CHEAP}: 19 prediction(s), active, tab '★ v-cheap vs GT'" in listing
    assert f"{GOOD}: 18 prediction(s), inactive, tab '☆ v-good vs GT (inactive)'" in listing
    assert main(["activate", "--project", str(pid), "--version", "v-none"]) == 2
    assert "has no evaluation 'eval(v-none vs ground_truth)'" in capsys.readouterr().err


def test_a_write_back_without_make_current_gets_an_inactive_tab(project):
    """A second evaluation written while another is active must not show the active one's scores."""
    pid, ids, client = project
    score_and_write(client, pid, "v-cheap", make_current=True)
    _, good = score_and_write(client, pid, "v-good")
    assert good["tab"]["title"] == "☆ v-good vs GT (inactive)" and not good["tab"]["active"]
    assert client.project(pid)["model_version"] == CHEAP
    assert "★ v-cheap vs GT" in tabs_by_title(client, pid)


def test_a_project_without_tabs_gets_a_default_tab_first(project):
    pid, ids, client = project
    assert client.views(pid) == []   # the Data Manager was never opened
    score_and_write(client, pid, "v-cheap", make_current=True)
    views = client.views(pid)
    assert [v["title"] for v in views] == [DEFAULT_TAB, "★ v-cheap vs GT"]
    assert not (views[0]["data"].get("filters") or {}).get("items")
    assert len(client.view_tasks(pid, views[0]["id"])) == 20   # every task
    score_and_write(client, pid, "v-good")
    assert [v["title"] for v in client.views(pid)].count(DEFAULT_TAB) == 1


def test_a_tab_of_an_earlier_release_is_taken_over(project):
    pid, ids, client = project
    client.create_view(pid, DEFAULT_TAB, {})
    old = client.upsert_view(pid, "Agreement: v-cheap vs ground_truth", {"ordering": ["tasks:predictions_score"]})
    _, out = score_and_write(client, pid, "v-cheap", make_current=True)
    assert out["tab"]["id"] == old
    assert [v["title"] for v in client.views(pid)] == [DEFAULT_TAB, "★ v-cheap vs GT"]


# --------------------------------------------------------------------------- what a person sees
TAB_LABELS = "return [...document.querySelectorAll('[role=tab]')].map(t => t.getAttribute('aria-label'));"
# Of each tab title, the part drawn: the tab strip cuts titles with an ellipsis (about 15 characters at 1440 px).
VISIBLE_PART = """
return [...document.querySelectorAll('[role=tab] span')].map(s => {
  const r = document.createRange(); const text = s.textContent; let n = text.length;
  const box = s.getBoundingClientRect();
  while (n > 0) { r.setStart(s.firstChild, 0); r.setEnd(s.firstChild, n);
                  if (r.getBoundingClientRect().right <= box.right + 0.5) break; n--; }
  return text.slice(0, n);
});
"""
HEADER = "return [...document.querySelectorAll('.lsf-table-head .lsf-table__cell')].map(c => c.innerText.trim());"


@pytest.mark.browser
def test_in_the_data_manager_only_the_active_tab_shows_scores(project, label_studio, chrome):  # noqa: F811
    from selenium.webdriver.common.by import By

    from tests import browser
    from tests.lsharness import PASSWORD, USERNAME

    pid, ids, client = project
    score_and_write(client, pid, "v-cheap", make_current=True)
    score_and_write(client, pid, "v-good", make_current=True)
    browser.login(chrome, label_studio.url, USERNAME, PASSWORD)
    chrome.get(f"{label_studio.url}/projects/{pid}/data")
    browser.wait_for_app(chrome)
    labels = browser.wait(lambda: chrome.execute_script(TAB_LABELS), message="the tab strip")
    assert labels == [DEFAULT_TAB, "☆ v-cheap vs GT (inactive)", "★ v-good vs GT"]
    visible = chrome.execute_script(VISIBLE_PART)
    # The marker and the version are always drawn; "(inactive)" is cut here, the missing score column says it.
    assert visible[1].startswith("☆ v-cheap") and visible[2].startswith("★ v-good"), visible

    def header_of(title):
        chrome.find_element(By.CSS_SELECTOR, f'[role=tab][aria-label="{title}"]').click()
        return browser.wait(lambda: (lambda h: h if "ID" in h else None)(chrome.execute_script(HEADER)),
                            message=f"the table of {title!r}")

    assert "Prediction score" in header_of("★ v-good vs GT")
    browser.wait(lambda: "Prediction score" not in header_of("☆ v-cheap vs GT (inactive)"),
                 message="the inactive tab without the Prediction score column")
