"""Write-back of per-task agreement into a real Label Studio 1.23.2.

Expected numbers are the hand-computed ones of tests/fixtures/ls_export/README.md.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.errors import LabelStudioError
from core.labelstudio import LabelStudioClient
from core.settings import Settings
from scoring.engine import evaluate
from scoring.writeback import WriteOptions, write_back
from tests.fixtures.ls_export import make_fixture
from tests.lsharness import FaultyProxy

pytestmark = pytest.mark.labelstudio
REPO = Path(__file__).resolve().parent.parent
CHEAP = "eval(v-cheap vs ground_truth)"

# v-cheap against ground truth, per task (README): the lowest agreement first.
CHEAP_SCORES = {"t02": 0.75, "t03": 0.75, "t05": 0.75, "t09": 0.75, "t08": 0.875, "t13": 0.875, "t14": 0.875,
                "t17": 0.95, "t16": (3 + 18 / 19) / 4}
CHEAP_SCORES.update({k: 1.0 for k in ("t01", "t04", "t06", "t07", "t10", "t11", "t12", "t15", "t18", "t20")})
# v-good against ground truth (README), for when v-cheap's predictions are replaced by v-good's.
GOOD_SCORES = {"t03": 0.75, "t07": 0.95, "t12": 0.9375, "t15": (3 + 13 / 14) / 4}


def score_and_write(client, pid, version="v-cheap", against="ground_truth", **kw):
    tasks, config = client.pull_project(pid, progress=False)
    report = evaluate(tasks, config, version, against)
    return report, write_back(client, pid, report, tasks, WriteOptions(**kw))


def others(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if not k.startswith("eval(")}


def make_cheap_like_good(ls, pid, ids) -> None:
    """Give v-cheap a newer prediction equal to v-good's on t01-t19 (t20 keeps the old one)."""
    preds = []
    for key, tid in ids.items():
        values = make_fixture.version_labelling(key, "v-good")
        if values is not None:
            result = make_fixture.regions(make_fixture.TASKS[key][0], values, "new-")
            preds.append({"task": tid, "model_version": "v-cheap", "result": result})
    ls.projects.import_predictions(pid, request=preds)


def scores_by_ref(client, pid, ids, name=CHEAP) -> dict:
    ref_of = {tid: ref for ref, tid in ids.items()}
    return {ref_of[p["task"]]: p["score"] for p in client.predictions_of_version(pid, name)}


@pytest.fixture
def project(label_studio):
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="write-back")
    return pid, ids, LabelStudioClient(label_studio.settings(), backoff=0.01)


def test_sorting_the_tab_by_prediction_score_gives_lowest_agreement_first(project):
    pid, ids, client = project
    ref_of = {tid: ref for ref, tid in ids.items()}
    _, out = score_and_write(client, pid, make_current=True)
    assert (out["model_version"], out["written"], out["created"], out["deleted"]) == (CHEAP, 19, 19, 0)
    assert client.project(pid)["model_version"] == CHEAP

    rows = client.view_tasks(pid, out["tab"]["id"])
    refs = [ref_of[r["id"]] for r in rows]
    assert "t19" not in refs  # no ground truth: not compared, so not in the evaluation's tab
    assert sorted(refs) == sorted(CHEAP_SCORES)
    assert set(refs[:4]) == {"t02", "t03", "t05", "t09"}
    assert set(refs[4:7]) == {"t08", "t13", "t14"}
    assert refs[7] == "t17" and refs[8] == "t16"
    assert [r["predictions_score"] for r in rows] == pytest.approx([CHEAP_SCORES[ref] for ref in refs])

    # The evaluation prediction carries the version's own regions.
    tasks, _ = client.pull_project(pid, progress=False)
    t13 = next(t for t in tasks if t["data"]["ref"] == "t13")
    ev = next(p for p in t13["predictions"] if p["model_version"] == CHEAP)
    cheap = next(p for p in t13["predictions"] if p["model_version"] == "v-cheap")
    assert ev["result"] == cheap["result"] and ev["score"] == pytest.approx(0.875)


def test_without_the_current_model_version_the_score_column_is_empty(project):
    """The Label Studio 1.23.2 behaviour the README instructions rest on."""
    pid, ids, client = project
    _, out = score_and_write(client, pid)
    assert out["current_model_version"] is None
    rows = client.view_tasks(pid, out["tab"]["id"])
    assert len(rows) == 19 and {r["predictions_score"] for r in rows} == {None}
    client.set_model_version(pid, CHEAP)
    assert sorted(r["predictions_score"] for r in client.view_tasks(pid, out["tab"]["id"]))[:4] == [0.75] * 4
    # Switching "Use predictions to prelabel tasks" off clears the current version, and the column with it.
    client.sdk.projects.update(pid, show_collab_predictions=False)
    assert not client.project(pid)["model_version"]
    assert {r["predictions_score"] for r in client.view_tasks(pid, out["tab"]["id"])} == {None}


def test_rerun_changes_only_what_changed(project, label_studio):
    pid, ids, client = project
    _, first = score_and_write(client, pid, make_current=True)
    counts1 = client.model_version_counts(pid)
    _, again = score_and_write(client, pid)
    assert (again["created"], again["deleted"], again["unchanged"], again["written"]) == (0, 0, 19, 19)
    assert client.model_version_counts(pid) == counts1 == {CHEAP: 19, "v-good": 19, "v-cheap": 20}

    # A reviewer fixes t02's ground truth to what v-cheap said (Neutral): only t02 changes.
    ls = label_studio.sdk()
    tasks, _ = client.pull_project(pid, progress=False)
    t02 = next(t for t in tasks if t["data"]["ref"] == "t02")
    ann = t02["annotations"][0]
    result = [dict(r, value={"choices": ["Neutral"]}) if r["from_name"] == "sentiment" else r for r in ann["result"]]
    ls.annotations.update(ann["id"], result=result)
    _, fixed = score_and_write(client, pid)
    assert (fixed["created"], fixed["deleted"], fixed["unchanged"], fixed["mode"]) == (1, 1, 18, "incremental")
    assert client.model_version_counts(pid) == counts1
    assert scores_by_ref(client, pid, ids)["t02"] == 1.0
    assert client.project(pid)["model_version"] == CHEAP
    assert [v["title"] for v in client.views(pid)].count("★ v-cheap vs GT") == 1

    # A second evaluation lives next to the first one.
    _, good = score_and_write(client, pid, version="v-good")
    assert good["model_version"] == "eval(v-good vs ground_truth)"
    assert client.model_version_counts(pid) == {**counts1, "eval(v-good vs ground_truth)": 18}
    assert client.project(pid)["model_version"] == CHEAP


def test_mass_change_is_rewritten_in_bulk_and_stays_current(project, label_studio):
    pid, ids, client = project
    score_and_write(client, pid, make_current=True)
    make_cheap_like_good(label_studio.sdk(), pid, ids)  # 18 of 19 evaluation predictions change
    _, out = score_and_write(client, pid, rewrite_min=10)
    assert (out["mode"], out["written"], out["deleted"], out["created"]) == ("rewrite", 19, 19, 19)
    assert client.model_version_counts(pid)[CHEAP] == 19
    assert client.project(pid)["model_version"] == CHEAP  # cleared by Label Studio's bulk delete, put back
    scores = scores_by_ref(client, pid, ids)
    expected = {ref: GOOD_SCORES.get(ref, 1.0) for ref in CHEAP_SCORES}
    assert scores == pytest.approx(expected)


def test_label_studio_failing_mid_write_leaves_nothing_partial(project, label_studio):
    pid, ids, client = project
    score_and_write(client, pid, make_current=True)
    make_cheap_like_good(label_studio.sdk(), pid, ids)
    before = client.model_version_counts(pid)
    before_scores = scores_by_ref(client, pid, ids)
    imports = []

    def fail(n, method, path):
        if method == "POST" and "/import/predictions" in path:
            imports.append(n)
            if len(imports) >= 3:  # the third chunk and its retry fail
                return 503
        return None

    with FaultyProxy(label_studio.url, fail) as proxy:
        flaky = LabelStudioClient(label_studio.settings().replace(label_studio_url=proxy.url), attempts=2, backoff=0.01)
        with pytest.raises(LabelStudioError, match="503") as err:
            score_and_write(flaky, pid, chunk=5)
    assert f"Label Studio at {proxy.url}" in str(err.value) and label_studio.token not in str(err.value)
    assert len(imports) == 4  # chunks 1 and 2 stored, chunk 3 tried twice
    assert client.model_version_counts(pid) == before  # the 10 stored in this run were removed again
    assert scores_by_ref(client, pid, ids) == before_scores
    assert client.project(pid)["model_version"] == CHEAP


def test_label_studio_stopping_mid_write_then_rerun_repairs(project, label_studio):
    """Label Studio goes away during the third import chunk (that request dropped, then connections refused):
    one error naming its URL, and the next run, once it is back, leaves exactly one prediction per task."""
    pid, ids, client = project
    score_and_write(client, pid, make_current=True)
    make_cheap_like_good(label_studio.sdk(), pid, ids)   # 18 of 19 evaluation predictions change: incremental
    imports, box = [], []

    def fail(n, method, path):
        if imports and len(imports) >= 3:
            raise ConnectionResetError("stopped")  # a request that was still on its way in
        if method == "POST" and "/import/predictions" in path:
            imports.append(n)
            if len(imports) == 3:
                threading.Thread(target=box[0].close).start()  # stop listening: later connections are refused
                raise ConnectionResetError("Label Studio stopped")
        return None

    proxy = FaultyProxy(label_studio.url, fail)
    box.append(proxy)
    flaky = LabelStudioClient(label_studio.settings().replace(label_studio_url=proxy.url), attempts=2, backoff=0.01)
    with pytest.raises(LabelStudioError) as err:
        score_and_write(flaky, pid, chunk=5)
    message = str(err.value)
    assert f"Label Studio at {proxy.url}" in message and label_studio.token not in message
    assert client.model_version_counts(pid)[CHEAP] == 19 + 10   # chunks 1 and 2 stored; the rollback could not run
    _, repaired = score_and_write(client, pid)
    assert client.model_version_counts(pid)[CHEAP] == repaired["written"] == 19
    assert scores_by_ref(client, pid, ids) == pytest.approx({ref: GOOD_SCORES.get(ref, 1.0) for ref in CHEAP_SCORES})


def scoring_cli(label_studio, url: str, data_dir: Path, *args: str, **popen) -> subprocess.Popen:
    """``python -m scoring ...`` against Label Studio at ``url`` (no Redis: history and lock under ``data_dir``)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(LABEL_STUDIO_URL=url, LABEL_STUDIO_API_KEY=label_studio.token, DATA_DIR=str(data_dir))
    return subprocess.Popen([sys.executable, "-m", "scoring", *args], cwd=REPO, env=env, text=True, **popen)


def test_score_cli_with_label_studio_answering_5xx_fails_in_one_line_and_records_nothing(project, label_studio,
                                                                                         tmp_path):
    pid, ids, client = project
    score_and_write(client, pid, make_current=True)
    make_cheap_like_good(label_studio.sdk(), pid, ids)
    before = client.model_version_counts(pid)

    def fail(n, method, path):
        return 500 if method == "POST" and "/import/predictions" in path else None

    with FaultyProxy(label_studio.url, fail) as proxy:
        p = scoring_cli(label_studio, proxy.url, tmp_path / "var", "score", "--project", str(pid), "--version",
                        "v-cheap", "--write-back", "--no-progress", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"Label Studio at {proxy.url}" in errors[0] and "HTTP 500" in errors[0], err
    assert label_studio.token not in out + err
    assert client.model_version_counts(pid) == before                # nothing partial, nothing duplicated
    from scoring.history import open_history

    assert open_history(Settings(data_dir=str(tmp_path / "var"))).list(pid) == []   # a failed run is not recorded


# ---------------------------------------------------------------- two write-backs at once (issue 8 finding 16)
def test_identical_write_backs_started_together_run_one_after_the_other(project, label_studio, tmp_path):
    """Two ``score --write-back`` processes and the worker's ``score_job`` start while the lock is held (a gate,
    so that all three really contend); released, they run one at a time: the evaluation predictions are created
    once (by whichever goes first), the others find them unchanged, and the history holds three runs that do not
    overlap in time (each really ran, after the previous one finished)."""
    from core.locks import hold
    from scoring.history import open_history
    from scoring.jobs import lock_key, score_job

    pid, ids, client = project
    data_dir = tmp_path / "var"
    settings = label_studio.settings(data_dir=str(data_dir))
    waiting = (f"waiting for the scoring run of project {pid} version v-cheap against ground_truth that holds the "
               f"lock {lock_key(pid, 'v-cheap', 'ground_truth')}")
    logs, procs, job = [tmp_path / "a.log", tmp_path / "b.log"], [], {}
    with hold(lock_key(pid, "v-cheap", "ground_truth"), connection=None, directory=str(data_dir), wait=0):
        for i, log_path in enumerate(logs):
            procs.append(scoring_cli(label_studio, label_studio.url, data_dir, "score", "--project", str(pid),
                                     "--version", "v-cheap", "--write-back", "--no-progress", "--json",
                                     str(tmp_path / f"{i}.json"), stdout=subprocess.DEVNULL,
                                     stderr=log_path.open("w")))
        worker = threading.Thread(target=lambda: job.update(score_job(pid, "v-cheap", settings=settings)))
        worker.start()
        deadline = time.monotonic() + 60
        while not all(log_path.exists() and waiting in log_path.read_text() for log_path in logs):
            assert time.monotonic() < deadline, [log_path.read_text() for log_path in logs]
            time.sleep(0.1)
        time.sleep(0.5)   # the worker's job is blocked on the gate too
        assert not job and all(p.poll() is None for p in procs)
    for p in procs:
        assert p.wait(300) == 0, [log_path.read_text() for log_path in logs]
    worker.join(300)
    assert job["write_back"] and job["n_compared"] == 19     # the job took the lock once: no deadlock

    written = [json.loads((tmp_path / f"{i}.json").read_text())["write_back"] for i in range(2)]
    created = sorted(w["created"] for w in written)
    assert created in ([0, 0], [0, 19]) and {w["deleted"] for w in written} == {0}   # [0, 0]: the job went first
    assert all(w["written"] == 19 for w in written)
    assert client.model_version_counts(pid) == {CHEAP: 19, "v-good": 19, "v-cheap": 20}   # created once
    runs = sorted(open_history(settings).list(pid), key=lambda r: r["started_at"])
    assert len(runs) == 3 and {r["version"] for r in runs} == {"v-cheap"}
    for first, second in zip(runs, runs[1:], strict=False):
        assert first["finished_at"] <= second["started_at"]   # one after the other, never overlapping


# ---------------------------------------------------------------- crash

def _child(url: str, token: str, pid: int, marker: str, kill_after: int, rewrite_min: int) -> None:
    """Run in a child process: write back in chunks of 3 and hang once ``kill_after`` are created."""
    from core.settings import Settings

    client = LabelStudioClient(Settings(label_studio_url=url, label_studio_api_key=token))

    def hook(done: int) -> None:
        if done >= kill_after:
            Path(marker).write_text(str(done))
            time.sleep(600)

    score_and_write(client, pid, chunk=3, on_chunk=hook, rewrite_min=rewrite_min)


def _run_and_kill(label_studio, pid, tmp_path, rewrite_min) -> None:
    marker = tmp_path / f"marker-{rewrite_min}"
    code = (f"from tests.test_labelstudio_writeback import _child; "
            f"_child({label_studio.url!r}, {label_studio.token!r}, {pid}, {str(marker)!r}, 9, {rewrite_min})")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the write-back child exited early"
            assert time.monotonic() < deadline, "the write-back child never reached its hook"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # mid-write: 9 new predictions are in
        child.wait(10)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


@pytest.mark.parametrize("rewrite_min", [10**9, 1], ids=["incremental", "bulk-rewrite"])
def test_killed_mid_write_then_rerun_repairs(project, label_studio, tmp_path, rewrite_min):
    pid, ids, client = project
    score_and_write(client, pid, make_current=True)
    make_cheap_like_good(label_studio.sdk(), pid, ids)
    _run_and_kill(label_studio, pid, tmp_path, rewrite_min)

    crashed = client.model_version_counts(pid)[CHEAP]
    # incremental: 19 old + 9 new (9 tasks have two for now); bulk: old ones gone, 9 new
    assert crashed == (28 if rewrite_min > 1 else 9)

    _, repaired = score_and_write(client, pid)
    counts = client.model_version_counts(pid)
    assert counts[CHEAP] == repaired["written"] == 19
    assert others(counts) == {"v-good": 19, "v-cheap": 39}
    assert scores_by_ref(client, pid, ids) == pytest.approx({ref: GOOD_SCORES.get(ref, 1.0) for ref in CHEAP_SCORES})
    assert client.project(pid)["model_version"] == CHEAP  # still (or again) the current one
    rows = client.view_tasks(pid, repaired["tab"]["id"])
    assert [r["predictions_score"] for r in rows][0] == 0.75
