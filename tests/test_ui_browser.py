"""The whole loop, checked in Label Studio's own UI with headless Chromium (tests/browser.py).

A project with the demo's review config and ground truth gets predictions from the ML backend
(connected to a real Label Studio 1.23.2, answering through the stand-in LLM), is scored with
write-back, and then a browser logs in and checks what a reviewer sees:

- the Data Manager tab "Agreement: <version> vs ground_truth" lists the tasks lowest agreement
  first, its "Prediction score" column showing the written-back scores;
- the lowest-scoring task opens, with the evaluation's prediction (its score in the tab button)
  whose regions are listed;
- the project's Model settings page shows the backend connected (title and URL).

Screenshots go to out/screenshots/ (``make screenshots`` copies the Agreement tab and the Model
page to docs/screenshots/ for the README).  A missing Chromium fails the test like a missing
Label Studio (tests/lsharness.py): a skip only with ``ALLOW_SKIP_SERVICES=1`` outside CI.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

from backend.app import create_app
from backend.schema import plan_for
from backend.versions import load_versions
from core.settings import Settings
from fakellm import FakeLLM, TableAnswer
from fakellm.dataset import LABEL_CONFIG, make_tasks
from fakellm.oracle import answer_from_regions
from scoring.pipeline import ScoreOptions, score_project
from scoring.writeback import evaluation_name, tab_title
from tests import browser
from tests.lsharness import PASSWORD, USERNAME, skipping_allowed

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "out" / "screenshots"
VERSION = "reviews-gpt-4o-mini-v1"
BACKEND_TITLE = "LLM pre-labels"
N_TASKS = 20

# The Data Manager's table, read as text: the header cells and each row's cells, in order.
READ_TABLE = """
const head = [...document.querySelectorAll('.lsf-table-head .lsf-table__cell')].map(c => c.innerText.trim());
const rows = [...document.querySelectorAll('.lsf-table__row-wrapper')]
  .map(r => [...r.querySelectorAll('.lsf-table__cell')].map(c => c.innerText.trim()));
return {head, rows};
"""


@pytest.fixture
def chrome(tmp_path):
    """Headless Chromium with a fresh profile; fails (never skips, unless allowed) when it cannot start."""
    from selenium.common.exceptions import WebDriverException

    try:
        driver = browser.chromium(tmp_path / "chromium-profile")
    except (RuntimeError, WebDriverException) as exc:
        message = f"headless Chromium is not available: {exc}".splitlines()[0]
        if skipping_allowed():
            pytest.skip(f"{message} (skipped: ALLOW_SKIP_SERVICES=1)")
        pytest.fail(f"{message}\n(tools/ensure_chromium.sh installs it; for local runs without it: "
                    "ALLOW_SKIP_SERVICES=1, or -m 'not browser')", pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def scored_project(label_studio, tmp_path):
    """A project pre-labelled by the backend through Label Studio, then scored with write-back."""
    tasks = make_tasks(N_TASKS)
    plan = plan_for(LABEL_CONFIG)
    table = {t["data"]["text"]: answer_from_regions(t["annotations"][0]["result"], plan, t["data"]["text"])
             for t in tasks}
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"default": VERSION, "versions": [
        {"id": VERSION, "provider": "openai", "model": "gpt-4o-mini",
         "instruction": "You label customer reviews.\n<text>{text}</text>"}]}))
    with FakeLLM(TableAnswer(table, error_rates={"gpt-4o-mini": 0.5}, seed=1)) as fake:
        settings = Settings(prompts_file=str(prompts), openai_api_key="test-key",
                            openai_base_url=fake.openai_base_url, data_dir=str(tmp_path / "var"))
        server = make_server("127.0.0.1", 0, create_app(settings, load_versions(str(prompts))), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        backend_url = f"http://127.0.0.1:{server.server_port}"
        try:
            ls = label_studio.sdk()
            pid = label_studio.create_project(LABEL_CONFIG, title="Customer reviews")
            ls.projects.import_tasks(id=pid, request=[{"data": t["data"], "annotations": t["annotations"]}
                                                      for t in tasks])
            ls.ml.create(project=pid, url=backend_url, title=BACKEND_TITLE, is_interactive=False,
                         extra_params=json.dumps({"version": VERSION}))
            ls.actions.create(id="retrieve_tasks_predictions", project=pid,
                              selected_items={"all": True, "excluded": []})
            predicted = [t for t in ls.tasks.list(project=pid, fields="all")
                         if any(p.model_version == VERSION for p in t.predictions or [])]
            assert len(predicted) == N_TASKS
            report = score_project(label_studio.settings(data_dir=str(tmp_path / "scoring")), pid, VERSION,
                                   ScoreOptions(write_back=True, make_current=True, progress=False))
            yield {"pid": pid, "report": report, "backend_url": backend_url, "ls": ls}
        finally:
            server.shutdown()


def shot(driver, name: str, park_mouse_on: str = "body") -> Path:
    """Save a screenshot, the mouse first moved onto ``park_mouse_on`` (no hover tooltip in the picture)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, park_mouse_on)).perform()
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def read_scores(driver) -> tuple[list[int], list[float]]:
    """The task ids and "Prediction score" values of the Data Manager rows, top to bottom."""
    def table():
        t = driver.execute_script(READ_TABLE)
        return t if t["rows"] and "Prediction score" in t["head"] and all(r[1] for r in t["rows"]) else None

    t = browser.wait(table, message="the Data Manager rows with a Prediction score column")
    col, id_col = t["head"].index("Prediction score"), t["head"].index("ID")
    return [int(r[id_col]) for r in t["rows"]], [float(r[col]) for r in t["rows"]]


@pytest.mark.labelstudio
@pytest.mark.browser
def test_a_reviewer_sees_the_lowest_agreement_first_and_the_connected_backend(label_studio, scored_project, chrome):
    from selenium.webdriver.common.by import By

    pid, report = scored_project["pid"], scored_project["report"]
    url, title = label_studio.url, tab_title(VERSION, "ground_truth")
    scores = {t["id"]: t["score"] for t in report["tasks"]}
    assert report["write_back"]["tab"]["title"] == title and len(set(scores.values())) > 2

    browser.login(chrome, url, USERNAME, PASSWORD)
    chrome.get(f"{url}/projects/{pid}/data")
    browser.wait_for_app(chrome)
    tab = browser.wait(lambda: chrome.find_element(By.CSS_SELECTOR, f'[role=tab][aria-label="{title}"]'),
                       message=f"the Data Manager tab {title!r}")
    tab.click()
    ids, shown = read_scores(chrome)
    shot(chrome, "agreement-tab.png", park_mouse_on=".lsf-table__row-wrapper")
    # The rows drawn (the table draws those in view, 18 of 20 here): lowest agreement first, the
    # scores written back, and they are the lowest of all compared tasks.
    assert len(ids) >= 8 and shown == sorted(shown) and shown[0] < shown[-1], shown
    assert shown == pytest.approx([round(scores[i], 3) for i in ids], abs=1e-3)
    assert shown == pytest.approx(sorted(scores.values())[:len(shown)], abs=1e-3)

    # The lowest-scoring task: the evaluation's prediction carries the score and the version's regions.
    lowest = ids[0]
    chrome.find_elements(By.CSS_SELECTOR, ".lsf-table__row-wrapper")[0].click()
    browser.wait(lambda: f"task={lowest}" in chrome.current_url, message="the task to open")
    name = evaluation_name(VERSION, "ground_truth")
    button = ('//*[contains(@class, "lsf-annotation-button")]'
              f'[.//span[@title="Prediction score = {scores[lowest]}"]]')
    pred = browser.wait(lambda: chrome.find_element(By.XPATH, button),
                        message="the evaluation's prediction button with its score")
    pred.click()
    browser.wait(lambda: "lsf-annotation-button_selected" in pred.get_attribute("class"), message="its selection")
    regions = browser.wait(lambda: [e.text for e in chrome.find_elements(By.CSS_SELECTOR, ".lsf-outliner-item")
                                    if e.text.strip()], message="the prediction's regions")
    shot(chrome, "lowest-task.png", park_mouse_on=".lsf-outliner")
    stored = next(p for p in scored_project["ls"].tasks.get(lowest).predictions if p.model_version == name)
    spans = [r["value"]["text"] for r in stored.result if r["type"] == "labels"]
    assert spans and all(any(s in shown_region for shown_region in regions) for s in spans), (spans, regions)

    # The Model settings page: the backend connected, by its title and URL.
    chrome.get(f"{url}/projects/{pid}/settings/ml")
    body = browser.wait(lambda: (lambda t: t if scored_project["backend_url"] in t else None)(
        chrome.find_element(By.TAG_NAME, "body").text), message="the connected backend on the Model page")
    shot(chrome, "model-settings.png")
    assert "Connected" in body and BACKEND_TITLE in body


# --------------------------------------------------------------------------- a missing browser
def test_ensure_chromium_fails_loudly_when_the_browser_is_not_there(tmp_path):
    env = {**os.environ, "CHROMIUM": str(tmp_path / "no-chromium"), "CHROMEDRIVER": str(tmp_path / "no-driver")}
    out = subprocess.run(["bash", str(browser.ENSURE_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (1, "")
    assert "tools/ensure_chromium.sh:" in out.stderr and "not executable" in out.stderr


TINY = """
from tests.test_ui_browser import chrome  # noqa: F401  (the fixture)


def test_needs_chromium(chrome):
    assert chrome.title is not None
"""


@pytest.mark.parametrize(("env", "status"), [({}, 1), ({"CI": "true", "ALLOW_SKIP_SERVICES": "1"}, 1),
                                             ({"ALLOW_SKIP_SERVICES": "1"}, 0)], ids=["default", "ci", "allow-skip"])
def test_a_missing_chromium_fails_the_browser_tests(tmp_path, env, status):
    test = tmp_path / "test_tiny_browser.py"
    test.write_text(TINY)
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "ALLOW_SKIP_SERVICES")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO),
                          str(test)], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**base, "PYTHONPATH": str(REPO), "CHROMEDRIVER": str(tmp_path / "no-driver"), **env})
    assert out.returncode == status, out.stdout
    assert "headless Chromium is not available" in out.stdout and "is not an executable" in out.stdout
    assert ("1 error" in out.stdout) == (status == 1) and ("1 skipped" in out.stdout) == (status == 0)
