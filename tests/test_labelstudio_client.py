"""core.labelstudio.LabelStudioClient against a real Label Studio 1.23.2 (and a faulty stand-in)."""
from __future__ import annotations

import re

import pytest

from core.errors import LabelStudioError
from core.labelstudio import LabelStudioClient
from tests.fixtures.ls_export import make_fixture
from tests.lsharness import FaultyProxy, free_port

pytestmark = pytest.mark.labelstudio


@pytest.fixture(scope="module")
def fixture_project(label_studio):
    """The 20-task fixture project (see tests/fixtures/ls_export/README.md): (project id, {ref: task id})."""
    return make_fixture.build_project(label_studio.sdk(), title="client tests")


def client_for(label_studio, **kw) -> LabelStudioClient:
    return LabelStudioClient(label_studio.settings(), backoff=0.01, **kw)


def test_pull_project_returns_full_predictions_and_the_config(label_studio, fixture_project):
    pid, ids = fixture_project
    client = client_for(label_studio)
    tasks, config = client.pull_project(pid, progress=False)
    assert config == make_fixture.CONFIG.strip()
    assert len(tasks) == 20 == client.count_tasks(pid)
    by_ref = {t["data"]["ref"]: t for t in tasks}
    assert set(by_ref) == set(ids)
    t07 = by_ref["t07"]
    good = [p for p in t07["predictions"] if p["model_version"] == "v-good"][0]
    assert [r["value"]["text"] for r in good["result"] if r["from_name"] == "ner"] == ["Eve Adams", "Madrid"]
    assert t07["annotations"][0]["ground_truth"] is True
    # the snapshot export was deleted after download
    assert list(label_studio.sdk().projects.exports.list(pid)) == []


def test_tasks_by_ids_lists_just_those_tasks_without_opening_them(label_studio, fixture_project):
    """What the pre-label job reads: a few tasks with their predictions, in one listing (no tasks.get,
    which would make Label Studio call /predict), retried through a flaky proxy."""
    pid, ids = fixture_project
    faulty = FaultyProxy(label_studio.url, lambda n, m, p: 502 if n == 1 else None)
    try:
        client = LabelStudioClient(label_studio.settings().replace(label_studio_url=faulty.url), backoff=0.01)
        tasks = client.tasks_by_ids(pid, [ids["t07"], ids["t19"]])
        assert client.label_config(pid) == make_fixture.CONFIG.strip()
        paths = [path for _, path in faulty.requests]
    finally:
        faulty.close()
    assert sorted(t["id"] for t in tasks) == sorted([ids["t07"], ids["t19"]])
    t07 = next(t for t in tasks if t["id"] == ids["t07"])
    assert t07["data"]["ref"] == "t07"
    assert {p["model_version"] for p in t07["predictions"]} == {"v-good", "v-cheap"}
    assert paths[0] == paths[1]  # the first listing got a 502 and was retried
    opened = [path for path in paths if re.match(r"/api/tasks/\d", path)]   # GET /api/tasks/<id> calls /predict
    assert paths[0].startswith("/api/tasks/?") and opened == []
    assert client.tasks_by_ids(pid, []) == []


def test_model_version_counts_import_and_delete(label_studio):
    client = client_for(label_studio)
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="client writes")
    assert client.model_version_counts(pid) == {"v-good": 19, "v-cheap": 20}

    seen = []
    preds = [{"task": tid, "model_version": "extra", "score": 0.5, "result": []} for tid in ids.values()]
    assert client.import_predictions(pid, preds, chunk=7, on_chunk=seen.append) == 20
    assert seen == [7, 14, 20]
    assert client.model_version_counts(pid) == {"v-good": 19, "v-cheap": 20, "extra": 20}

    # Deleting another version leaves the project's current model version alone ...
    client.set_model_version(pid, "v-good")
    assert client.delete_model_version(pid, "extra") == 20
    assert client.project(pid)["model_version"] == "v-good"
    assert client.model_version_counts(pid) == {"v-good": 19, "v-cheap": 20}
    # ... and deleting the current one clears it (Label Studio's own behaviour).
    assert client.delete_model_version(pid, "v-good") == 19
    assert not client.project(pid)["model_version"]
    assert client.model_version_counts(pid) == {"v-cheap": 20}
    assert client.delete_model_version(pid, "never-existed") == 0


def test_create_annotations_are_not_ground_truth(label_studio):
    client = client_for(label_studio)
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="client candidates")
    tasks, _ = client.pull_project(pid, progress=False)
    t19 = next(t for t in tasks if t["data"]["ref"] == "t19")  # the task without ground truth
    pred = next(p for p in t19["predictions"] if p["model_version"] == "v-cheap")
    [ann_id] = client.create_annotations(
        pid, [{"task": t19["id"], "result": pred["result"], "parent_prediction": pred["id"]}])
    tasks, _ = client.pull_project(pid, progress=False)
    t19 = next(t for t in tasks if t["data"]["ref"] == "t19")
    [ann] = t19["annotations"]
    assert ann["id"] == ann_id
    assert ann["ground_truth"] is False
    assert ann["parent_prediction"] == pred["id"]
    assert [r["value"] for r in ann["result"]] == [r["value"] for r in pred["result"]]


def test_task_url(label_studio):
    assert client_for(label_studio).task_url(3, 41) == f"{label_studio.url}/projects/3/data?task=41"


def test_missing_settings_is_a_config_error():
    from core.errors import ConfigError
    from core.settings import Settings

    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL"):
        LabelStudioClient(Settings())


# ---------------------------------------------------------------- failures

SECRET = "sekrit-key-0123456789"


def test_unreachable_is_retried_with_backoff_then_names_the_url_not_the_key():
    from core.settings import Settings

    sleeps = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = LabelStudioClient(Settings(label_studio_url=url, label_studio_api_key=SECRET), attempts=3, backoff=0.25,
                               sleep=sleeps.append)
    with pytest.raises(LabelStudioError) as err:
        client.count_tasks(1)
    assert sleeps == [0.25, 0.5]
    assert url in str(err.value) and "3 attempts" in str(err.value)
    assert SECRET not in str(err.value)


def test_5xx_is_retried_then_fails_with_a_clear_message():
    from core.settings import Settings

    faulty = FaultyProxy(None, lambda n, m, p: 503)
    try:
        client = LabelStudioClient(Settings(label_studio_url=faulty.url, label_studio_api_key=SECRET),
                                   attempts=3, backoff=0.01)
        with pytest.raises(LabelStudioError) as err:
            client.model_version_counts(5)
        assert len(faulty.requests) == 3
        assert "HTTP 503" in str(err.value) and faulty.url in str(err.value)
        assert SECRET not in str(err.value)
    finally:
        faulty.close()


def test_transient_5xx_then_success(label_studio, fixture_project):
    pid, _ = fixture_project
    faulty = FaultyProxy(label_studio.url, lambda n, m, p: 502 if n <= 2 else None)
    try:
        settings = label_studio.settings().replace(label_studio_url=faulty.url)
        client = LabelStudioClient(settings, attempts=4, backoff=0.01)
        assert client.model_version_counts(pid) == {"v-good": 19, "v-cheap": 20}
        assert len(faulty.requests) == 3
    finally:
        faulty.close()


def test_bad_key_is_not_retried_and_says_what_to_fix(label_studio):
    faulty = FaultyProxy(label_studio.url, lambda n, m, p: None)  # pure proxy: counts requests
    try:
        settings = label_studio.settings().replace(label_studio_url=faulty.url, label_studio_api_key=SECRET)
        client = LabelStudioClient(settings, attempts=4, backoff=0.01)
        with pytest.raises(LabelStudioError) as err:
            client.count_tasks(1)
        assert len(faulty.requests) == 1
        assert "LABEL_STUDIO_API_KEY" in str(err.value)
        assert SECRET not in str(err.value)
    finally:
        faulty.close()


def test_unknown_project_is_a_404_message(label_studio):
    with pytest.raises(LabelStudioError, match="not found"):
        client_for(label_studio).pull_project(987654, progress=False)


CHOICES = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
           '<Choice value="A"/><Choice value="B"/></Choices></View>')


def choices_project(label_studio, title: str, n: int) -> tuple[int, list[int]]:
    """A project of ``n`` tasks ``t0``, ``t1``... with :data:`CHOICES`: (its id, the task ids in order)."""
    pid = label_studio.create_project(CHOICES, title=title)
    sdk = label_studio.sdk()
    sdk.projects.import_tasks(id=pid, request=[{"data": {"text": f"t{i}"}} for i in range(n)], commit_to_project=True)
    return pid, sorted(t.id for t in sdk.tasks.list(project=pid, page_size=n + 10))


def pred(task: int, version: str) -> dict:
    return {"task": task, "model_version": version, "score": 0.5,
            "result": [{"from_name": "c", "to_name": "text", "type": "choices", "value": {"choices": ["A"]}}]}


def test_tasks_with_version_finds_exactly_that_version(label_studio):
    """What every run write asks first: which of these tasks already have a prediction of the version.
    Label Studio's filter matches versions that *contain* the name (v1 finds v10); the answer must not."""
    pid, ids = choices_project(label_studio, "tasks with version", 6)
    client = client_for(label_studio)
    client.import_predictions(pid, [pred(ids[0], "v1"), pred(ids[1], "v10"), pred(ids[2], "V1"),
                                    pred(ids[3], "v1"), pred(ids[3], "v10")])
    assert client.tasks_with_version(pid, ids, "v1") == {ids[0], ids[3]}
    assert client.tasks_with_version(pid, ids, "v10") == {ids[1], ids[3]}
    assert client.tasks_with_version(pid, ids[1:3], "v1") == set()     # only among the tasks asked about
    assert client.tasks_with_version(pid, ids, "v2") == set()
    assert client.tasks_with_version(pid, [], "v1") == set()


def test_list_tasks_lists_every_task_with_its_prediction_versions_in_pages(label_studio, monkeypatch):
    """What a run selects from: every task's data and the versions of its predictions (exact, also
    for versions that contain one another), across pages, without opening a task."""
    import core.labelstudio as ls_module

    pid, ids = choices_project(label_studio, "list tasks", 7)
    client = client_for(label_studio)
    client.import_predictions(pid, [pred(ids[0], "v1"), pred(ids[1], "v10"), pred(ids[1], "v1")])
    monkeypatch.setattr(ls_module, "LIST_PAGE", 3)   # 7 tasks: pages of 3, 3 and 1
    tasks, label_config = client.list_tasks(pid)
    assert label_config == CHOICES
    assert sorted(t["id"] for t in tasks) == ids
    by_id = {t["id"]: t for t in tasks}
    assert [by_id[i]["data"]["text"] for i in ids] == [f"t{i}" for i in range(7)]
    assert [p["model_version"] for p in by_id[ids[0]]["predictions"]] == ["v1"]
    assert sorted(p["model_version"] for p in by_id[ids[1]]["predictions"]) == ["v1", "v10"]
    assert all(by_id[i]["predictions"] == [] for i in ids[2:])


def test_a_refused_request_carries_its_status(label_studio):
    client = client_for(label_studio)
    with pytest.raises(LabelStudioError) as err:
        client.import_predictions(10 ** 6, [{"task": 1, "model_version": "v", "result": []}])
    assert err.value.status == 404
