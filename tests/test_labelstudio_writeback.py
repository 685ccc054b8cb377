"""Write-back of per-task agreement into a real Label Studio 1.23.2.

Expected numbers are the hand-computed ones of tests/fixtures/ls_export/README.md.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from scoring.engine import evaluate
from scoring.errors import LabelStudioError
from scoring.labelstudio import LabelStudioClient
from scoring.writeback import evaluation_name, is_run_of, write_back
from tests.fixtures.ls_export import make_fixture
from tests.lsharness import FaultyProxy

pytestmark = pytest.mark.labelstudio
REPO = Path(__file__).resolve().parent.parent

# v-cheap against ground truth, per task (README): the lowest agreement first.
CHEAP_SCORES = {"t02": 0.75, "t03": 0.75, "t05": 0.75, "t09": 0.75, "t08": 0.875, "t13": 0.875, "t14": 0.875,
                "t17": 0.95, "t16": (3 + 18 / 19) / 4}
CHEAP_SCORES.update({k: 1.0 for k in ("t01", "t04", "t06", "t07", "t10", "t11", "t12", "t15", "t18", "t20")})


def score_and_write(client, pid, version="v-cheap", against="ground_truth", **kw):
    tasks, config = client.pull_project(pid, progress=False)
    report = evaluate(tasks, config, version, against)
    return report, write_back(client, pid, report, tasks, **kw)


def runs_of(counts: dict, base: str) -> dict:
    return {mv: n for mv, n in counts.items() if is_run_of(base, mv)}


@pytest.fixture
def project(label_studio):
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="write-back")
    return pid, ids, LabelStudioClient(label_studio.settings(), backoff=0.01)


def test_sorting_the_tab_by_prediction_score_gives_lowest_agreement_first(project):
    pid, ids, client = project
    ref_of = {tid: ref for ref, tid in ids.items()}
    _, out = score_and_write(client, pid, make_current=True)
    assert out["written"] == 19
    assert client.project(pid)["model_version"] == out["model_version"]

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
    ev = next(p for p in t13["predictions"] if p["model_version"] == out["model_version"])
    cheap = next(p for p in t13["predictions"] if p["model_version"] == "v-cheap")
    assert ev["result"] == cheap["result"] and ev["score"] == pytest.approx(0.875)


def test_without_the_current_model_version_the_score_column_is_empty(project):
    """Label Studio 1.23.2 fact the README instructions rest on."""
    pid, ids, client = project
    _, out = score_and_write(client, pid)
    assert out["current_model_version"] is None
    rows = client.view_tasks(pid, out["tab"]["id"])
    assert len(rows) == 19 and {r["predictions_score"] for r in rows} == {None}
    client.set_model_version(pid, out["model_version"])
    assert sorted(r["predictions_score"] for r in client.view_tasks(pid, out["tab"]["id"]))[0] == 0.75


def test_rerun_replaces_the_previous_run(project, label_studio):
    pid, ids, client = project
    base = evaluation_name("v-cheap", "ground_truth")
    _, first = score_and_write(client, pid, make_current=True)
    counts1 = client.model_version_counts(pid)
    _, second = score_and_write(client, pid)  # no make_current: follows because the current one was replaced
    counts2 = client.model_version_counts(pid)
    assert second["model_version"] != first["model_version"]
    assert runs_of(counts1, base) == {first["model_version"]: 19}
    assert runs_of(counts2, base) == {second["model_version"]: 19}
    assert second["replaced"] == {first["model_version"]: 19}
    assert {k: v for k, v in counts2.items() if not is_run_of(base, k)} == {"v-good": 19, "v-cheap": 20}
    assert client.project(pid)["model_version"] == second["model_version"]
    assert second["tab"]["id"] == first["tab"]["id"]
    titles = [v["title"] for v in client.views(pid)]
    assert titles.count("Agreement: v-cheap vs ground_truth") == 1
    # a second evaluation lives next to the first one
    _, good = score_and_write(client, pid, version="v-good")
    counts3 = client.model_version_counts(pid)
    assert runs_of(counts3, base) == {second["model_version"]: 19}
    assert runs_of(counts3, evaluation_name("v-good", "ground_truth")) == {good["model_version"]: 18}
    assert client.project(pid)["model_version"] == second["model_version"]


def test_same_second_reruns_get_distinct_names(project):
    pid, ids, client = project
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    _, a = score_and_write(client, pid, when=when)
    _, b = score_and_write(client, pid, when=when)
    assert a["model_version"] == "eval(v-cheap vs ground_truth) @ 2026-01-02 03:04:05"
    assert b["model_version"] == a["model_version"] + " #2"
    assert runs_of(client.model_version_counts(pid), evaluation_name("v-cheap", "ground_truth")) == {b["model_version"]: 19}


def test_label_studio_failing_mid_write_leaves_nothing_partial(project, label_studio):
    pid, ids, client = project
    base = evaluation_name("v-cheap", "ground_truth")
    _, first = score_and_write(client, pid, make_current=True)
    before = client.model_version_counts(pid)
    imports = []

    def fail(n, method, path):
        if method == "POST" and "/import/predictions" in path:
            imports.append(n)
            if len(imports) >= 3:  # the third chunk and its retries fail
                return 503
        return None

    with FaultyProxy(label_studio.url, fail) as proxy:
        flaky = LabelStudioClient(label_studio.settings().replace(label_studio_url=proxy.url), attempts=2, backoff=0.01)
        with pytest.raises(LabelStudioError, match="503"):
            score_and_write(flaky, pid, chunk=5)
    assert len(imports) == 4  # chunks 1, 2 written, chunk 3 tried twice
    assert client.model_version_counts(pid) == before  # this run's 10 predictions were removed again
    assert client.project(pid)["model_version"] == first["model_version"]
    assert runs_of(before, base) == {first["model_version"]: 19}


# ---------------------------------------------------------------- crash

def _child(url: str, token: str, pid: int, marker: str, kill_after: int) -> None:
    """Run in a child process: write back in chunks of 3 and hang after ``kill_after`` predictions."""
    from backend.settings import Settings

    client = LabelStudioClient(Settings(label_studio_url=url, label_studio_api_key=token))

    def hook(done: int) -> None:
        if done >= kill_after:
            Path(marker).write_text(str(done))
            time.sleep(600)

    score_and_write(client, pid, chunk=3, on_chunk=hook)


def test_killed_mid_write_then_rerun_repairs(project, label_studio, tmp_path):
    pid, ids, client = project
    base = evaluation_name("v-cheap", "ground_truth")
    _, first = score_and_write(client, pid, make_current=True)
    marker = tmp_path / "marker"
    code = (f"from tests.test_labelstudio_writeback import _child; "
            f"_child({label_studio.url!r}, {label_studio.token!r}, {pid}, {str(marker)!r}, 9)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the write-back child exited early"
            assert time.monotonic() < deadline, "the write-back child never reached its hook"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # mid-write: 9 of 19 predictions are in
        child.wait(10)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)

    crashed = runs_of(client.model_version_counts(pid), base)
    assert crashed[first["model_version"]] == 19  # the previous run is untouched ...
    assert sorted(crashed.values()) == [9, 19]  # ... next to a partial one
    assert client.project(pid)["model_version"] == first["model_version"]

    _, repaired = score_and_write(client, pid)
    counts = client.model_version_counts(pid)
    assert runs_of(counts, base) == {repaired["model_version"]: 19}
    assert {k: v for k, v in counts.items() if not is_run_of(base, k)} == {"v-good": 19, "v-cheap": 20}
    assert client.project(pid)["model_version"] == repaired["model_version"]
    rows = client.view_tasks(pid, repaired["tab"]["id"])
    assert [r["predictions_score"] for r in rows][:4] == [0.75] * 4
