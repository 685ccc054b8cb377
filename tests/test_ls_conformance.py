"""Conformance against a real Label Studio 1.23.2 (pip-installed in its own venv, started by
tests/lsharness.py): connect the backend with the SDK, run "Retrieve Predictions" on a batch,
open one task, and check what Label Studio stored.
"""
from __future__ import annotations

import threading

import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface
from werkzeug.serving import make_server

from backend.app import create_app
from backend.versions import load_versions
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG, make_tasks
from tests.test_app import MULTI_CONFIG

pytestmark = pytest.mark.labelstudio
REVIEW = "Label this review.\n<text>{text}</text>"


@pytest.fixture
def backend_server(tmp_path, fake_llm):
    """The ML backend on a free 127.0.0.1 port, talking to the stand-in LLM."""
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"default": "reviews-v1", "versions": [
        {"id": "reviews-v1", "provider": "openai", "model": "gpt-4o-mini", "instruction": REVIEW},
        {"id": "reviews-claude-v1", "provider": "anthropic", "model": "claude-haiku-4-5", "instruction": REVIEW},
        {"id": "multi-v1", "provider": "openai", "model": "gpt-4o", "instruction": REVIEW + "\n{image}"},
    ]}))
    servers = []

    def start(**changes):
        settings = Settings(
            prompts_file=str(prompts), openai_api_key="test-key", openai_base_url=fake_llm.openai_base_url,
            anthropic_api_key="test-key", anthropic_base_url=fake_llm.anthropic_base_url,
            data_dir=str(tmp_path / "var"),
        ).replace(**changes)
        app = create_app(settings, load_versions(settings.prompts_file, settings.default_version))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for s in servers:
        s.shutdown()


def _predictions(ls, pid):
    out = {}
    for task in ls.tasks.list(project=pid, fields="all"):
        out[task.id] = [p if isinstance(p, dict) else p.dict() for p in (task.predictions or [])]
    return out


def test_retrieve_predictions_and_open_task(label_studio, backend_server, fake_llm):
    ls = label_studio.sdk()
    pid = label_studio.create_project(LABEL_CONFIG, title="conformance reviews")
    tasks = [{"data": t["data"]} for t in make_tasks(25)]
    ls.projects.import_tasks(id=pid, request=tasks)
    url = backend_server()
    ml = ls.ml.create(project=pid, url=url, title="LLM pre-labels", extra_params={"version": "reviews-claude-v1"},
                      is_interactive=False)
    assert ml.id
    fake_llm.requests.clear()
    ls.actions.create(id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []})
    preds = _predictions(ls, pid)
    assert len(preds) == 25
    li = LabelInterface(LABEL_CONFIG)
    for task_id, plist in preds.items():
        assert len(plist) == 1, task_id
        assert plist[0]["model_version"] == "reviews-claude-v1"
        assert plist[0]["result"], task_id
        assert li.validate_prediction({"result": plist[0]["result"]}, return_errors=True) in (True, [])
    assert {r["api"] for r in fake_llm.requests} == {"anthropic"}
    # Running it again sends nothing: every task has a prediction of the current version.
    n = len(fake_llm.requests)
    ls.actions.create(id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []})
    assert len(fake_llm.requests) == n
    assert all(len(p) == 1 for p in _predictions(ls, pid).values())

    # Opening a task without a prediction of the current version pre-labels it.
    ls.projects.import_tasks(id=pid, request=[{"data": {"text": "Acme sold me a broken kettle in Lyon."}}])
    new_id = max(t.id for t in ls.tasks.list(project=pid))
    ls.tasks.get(new_id)
    opened = _predictions(ls, pid)[new_id]
    assert [p["model_version"] for p in opened] == ["reviews-claude-v1"]
    assert {r["from_name"] for r in opened[0]["result"]} >= {"sentiment", "entities"}


def test_failed_tasks_are_left_for_the_next_retrieve(label_studio, backend_server):
    ls = label_studio.sdk()
    pid = label_studio.create_project(LABEL_CONFIG, title="conformance faults")
    data = [t["data"] for t in make_tasks(6)]
    data[2] = {"text": data[2]["text"] + " [[fault:refusal]]"}
    data[4] = {"text": data[4]["text"] + " [[fault:malformed]]"}
    ls.projects.import_tasks(id=pid, request=[{"data": d} for d in data])
    ls.ml.create(project=pid, url=backend_server(), title="LLM", is_interactive=False)
    ls.actions.create(id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []})
    counts = sorted(len(p) for p in _predictions(ls, pid).values())
    assert counts == [0, 0, 1, 1, 1, 1]  # the other four were stored; the batch was not dropped


def test_every_tag_and_basic_auth(label_studio, backend_server, fake_llm):
    fake_llm.set_answers(lambda info: {
        "topic": ["Tech"], "ner": [{"text": "Acme", "label": "ORG", "occurrence": 1}], "note": "fine", "stars": 3,
        "count": 4, "tax": [["Animal", "Dog"]], "box": [{"label": "Dog", "x": 5, "y": 5, "width": 50, "height": 60}],
    })
    ls = label_studio.sdk()
    pid = label_studio.create_project(MULTI_CONFIG, title="conformance all tags")
    data = {"text": "Alice from Acme met Bob.", "image": "https://example.org/dog.png"}
    ls.projects.import_tasks(id=pid, request=[{"data": data}] * 3)
    url = backend_server(basic_auth_user="ls", basic_auth_pass="pw-123", default_version="multi-v1")
    ls.ml.create(project=pid, url=url, title="LLM", auth_method="BASIC_AUTH", basic_auth_user="ls",
                 basic_auth_pass="pw-123", is_interactive=False)
    ls.actions.create(id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []})
    preds = _predictions(ls, pid)
    li = LabelInterface(MULTI_CONFIG)
    for plist in preds.values():
        assert [p["model_version"] for p in plist] == ["multi-v1"]
        names = {r["from_name"] for r in plist[0]["result"]}
        assert names == {"topic", "ner", "note", "stars", "count", "tax", "box"}
        assert li.validate_prediction({"result": plist[0]["result"]}, return_errors=True) in (True, [])


def test_full_loop_two_versions_scored_with_cost(label_studio, backend_server, fake_llm, tmp_path):
    """Predict with two versions through Label Studio, then score both: quality from the
    ground truth, cost from the ledger the backend wrote (same project key on both sides)."""
    from backend.schema import plan_for
    from fakellm import TableAnswer
    from fakellm.oracle import answer_from_regions
    from scoring.pipeline import ScoreOptions, score_project

    tasks = make_tasks(12)
    plan = plan_for(LABEL_CONFIG)
    table = {t["data"]["text"]: answer_from_regions(t["annotations"][0]["result"], plan, t["data"]["text"])
             for t in tasks}
    fake_llm.set_answers(TableAnswer(table, error_rates={"claude-haiku": 0.5}, seed=3))
    ls = label_studio.sdk()
    pid = label_studio.create_project(LABEL_CONFIG, title="full loop")
    ls.projects.import_tasks(id=pid, request=[{"data": t["data"], "annotations": t["annotations"]} for t in tasks])
    url = backend_server()
    for version in ("reviews-v1", "reviews-claude-v1"):
        ml = ls.ml.create(project=pid, url=url, title=f"LLM {version}", extra_params={"version": version},
                          is_interactive=False)
        ls.actions.create(id="retrieve_tasks_predictions", project=pid, selected_items={"all": True, "excluded": []})
        ls.ml.delete(id=ml.id)
    settings = label_studio.settings(data_dir=str(tmp_path / "var"))  # the backend's DATA_DIR: same ledger
    good = score_project(settings, pid, "reviews-v1", ScoreOptions(progress=False))
    cheap = score_project(settings, pid, "reviews-claude-v1", ScoreOptions(progress=False))
    assert good["n_compared"] == cheap["n_compared"] == 12
    assert good["score"] == 1.0 and cheap["score"] < 1.0
    assert good["cost"]["tasks"] == 12 and good["cost"]["usd"] > 0 and good["cost"]["projected_usd"] is not None
    assert cheap["cost"]["tasks"] == 12 and cheap["cost"]["usd_per_task"] > 0


def test_missing_provider_key_is_refused_when_connecting(label_studio, backend_server):
    """Without OPENAI_API_KEY the connection fails visibly in Label Studio (/setup answers 400
    naming the variable) instead of connecting and then returning empty predictions."""
    from label_studio_sdk.core.api_error import ApiError

    ls = label_studio.sdk()
    pid = label_studio.create_project(LABEL_CONFIG, title="conformance no key")
    url = backend_server(openai_api_key=None)
    with pytest.raises(ApiError) as refused:
        ls.ml.create(project=pid, url=url, title="LLM", is_interactive=False)
    assert refused.value.status_code == 400 and "setup" in str(refused.value.body)
    # the version whose key is set still connects
    ml = ls.ml.create(project=pid, url=url, title="LLM", extra_params={"version": "reviews-claude-v1"},
                      is_interactive=False)
    assert ml.id


@pytest.mark.parametrize("extra, expected", [
    ({"version": "no-such-version"}, "unknown prompt version 'no-such-version'"),
    ('{"version": ', "extra params must be JSON"),
])
def test_the_reason_a_connection_is_refused_reaches_label_studio(label_studio, backend_server, extra, expected):
    """Label Studio 1.23.2 reports a failed /setup as requests' "400 Client Error: <reason> for url",
    never the body: the backend puts its message in the reason phrase, so the UI shows the fix."""
    from label_studio_sdk.core.api_error import ApiError

    ls = label_studio.sdk()
    pid = label_studio.create_project(LABEL_CONFIG, title="conformance refused")
    with pytest.raises(ApiError) as refused:
        ls.ml.create(project=pid, url=backend_server(), title="LLM", extra_params=extra, is_interactive=False)
    shown = str(refused.value.body)
    print("Label Studio says:", shown[:600])
    assert refused.value.status_code == 400 and expected in shown
