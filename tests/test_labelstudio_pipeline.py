"""score_project / compare_versions / ground-truth candidates and the `score` and `compare` commands,
against a real Label Studio 1.23.2.  Expected numbers: tests/fixtures/ls_export/README.md (hand-computed)."""
from __future__ import annotations

import json

import pytest

from backend.ledger import make_record, open_ledger
from backend.versions import Price, PromptVersion
from core.errors import ScoringError
from core.labelstudio import LabelStudioClient
from scoring.cli import main
from scoring.history import open_history
from scoring.pipeline import CompareOptions, ScoreOptions, compare_versions, score_project
from tests.fixtures.ls_export import make_fixture
from tests.lsharness import free_port

pytestmark = pytest.mark.labelstudio


@pytest.fixture(scope="module")
def gt_project(label_studio):
    return make_fixture.build_project(label_studio.sdk(), title="pipeline gt")


@pytest.fixture
def settings(label_studio, tmp_path):
    return label_studio.settings(data_dir=str(tmp_path))


def ref_of(ids):
    return {tid: ref for ref, tid in ids.items()}


def test_score_against_ground_truth_with_cost_and_history(gt_project, settings):
    pid, ids = gt_project
    # 18 pre-labelled tasks of v-good in the ledger: 1000 input + 100 output tokens at $1/$2 per 1M each.
    version = PromptVersion("v-good", "openai", "gpt-test", "{text}", price=Price(1.0, 2.0))
    from backend.providers.base import Usage

    ledger = open_ledger(settings)
    ledger.record_many([make_record(version, ids[k], str(pid), Usage(1000, 100, 0.5)) for k in list(ids)[:18]])
    ledger.close()

    report = score_project(settings, pid, "v-good", ScoreOptions(progress=False))
    assert report["score"] == pytest.approx(0.978869, abs=1e-6)
    assert (report["n_tasks"], report["n_compared"], report["n_skipped"]) == (20, 18, 2)
    assert report["kappa"]["sentiment"] == pytest.approx(194 / 212)
    assert report["alpha"]["sentiment"] == pytest.approx(776 / 846)
    f1 = report["per_label"]["sentiment"]
    assert (f1["Positive"]["f1"], f1["Neutral"]["f1"], f1["Negative"]["f1"]) == pytest.approx((14 / 15, 8 / 9, 1.0))
    assert [ref_of(ids)[r["id"]] for r in report["lowest"][:4]] == ["t03", "t12", "t07", "t15"]
    assert report["lowest"][0]["url"] == f"{settings.label_studio_url}/projects/{pid}/data?task={ids['t03']}"

    cost = report["cost"]
    assert (cost["calls"], cost["tasks"]) == (18, 18)
    assert cost["usd"] == pytest.approx(18 * 0.0012)
    assert cost["usd_per_task"] == pytest.approx(0.0012)
    assert cost["projected_usd"] == pytest.approx(0.0012 * 20)

    runs = open_history(settings).list(pid)
    assert [r["run_id"] for r in runs] == [report["run_id"]]
    assert runs[0]["score"] == pytest.approx(report["score"]) and runs[0]["reference"] == "ground_truth"
    assert report["write_back"] is None and report["candidates"] is None
    json.dumps(report)  # the whole report is plain JSON


def test_model_vs_model_lists_the_most_disagreeing_tasks(gt_project, settings):
    pid, ids = gt_project
    report = score_project(settings, pid, "v-good", ScoreOptions(against="v-cheap", progress=False))
    assert report["score"] == pytest.approx(17.181485 / 19, abs=1e-6)
    assert (report["n_compared"], report["n_skipped"]) == (19, 1)
    assert report["kappa"]["sentiment"] == pytest.approx(160 / 236)
    assert report["alpha"]["sentiment"] == pytest.approx(648 / 944)
    worst = [ref_of(ids)[r["id"]] for r in report["lowest"][:5]]
    assert sorted(worst) == ["t02", "t03", "t05", "t09", "t19"]
    assert {r["score"] for r in report["lowest"][:5]} == {0.75}
    # without a ledger record for this version the cost is unknown, and says so
    assert report["cost"]["usd"] is None and report["cost"]["notes"]


def test_ground_truth_candidates_from_the_most_agreeing_tasks(label_studio, settings):
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="no ground truth", with_annotations=False)
    names = ref_of(ids)
    with pytest.raises(ScoringError, match="against"):
        score_project(settings, pid, "v-good", ScoreOptions(candidates=3, progress=False))
    report = score_project(settings, pid, "v-good", ScoreOptions(against="v-cheap", candidates=3, progress=False))
    # six tasks agree fully (t01 t04 t06 t10 t11 t18); ties go to the lower task id
    assert [names[c["task"]] for c in report["candidates"]] == ["t01", "t04", "t06"]
    again = score_project(settings, pid, "v-good", ScoreOptions(against="v-cheap", candidates=3, progress=False))
    assert [names[c["task"]] for c in again["candidates"]] == ["t10", "t11", "t18"]  # no duplicates

    tasks, _ = LabelStudioClient(settings).pull_project(pid, progress=False)
    annotated = {names[t["id"]]: t for t in tasks if t["annotations"]}
    assert sorted(annotated) == ["t01", "t04", "t06", "t10", "t11", "t18"]
    for task in annotated.values():
        [ann] = task["annotations"]
        good = next(p for p in task["predictions"] if p["model_version"] == "v-good")
        assert ann["ground_truth"] is False
        assert ann["parent_prediction"] == good["id"]
        assert ann["result"] == good["result"]


def test_write_back_through_the_pipeline(label_studio, settings):
    pid, ids = make_fixture.build_project(label_studio.sdk(), title="pipeline write-back")
    report = score_project(settings, pid, "v-cheap", ScoreOptions(write_back=True, make_current=True, progress=False))
    wb = report["write_back"]
    assert (wb["written"], wb["current_model_version"]) == (19, "eval(v-cheap vs ground_truth)")
    client = LabelStudioClient(settings)
    rows = client.view_tasks(pid, wb["tab"]["id"])
    assert [r["predictions_score"] for r in rows][:4] == [0.75] * 4
    counts = client.model_version_counts(pid)
    rerun = score_project(settings, pid, "v-cheap", ScoreOptions(write_back=True, progress=False))
    assert rerun["write_back"]["unchanged"] == 19 and client.model_version_counts(pid) == counts
    assert len(open_history(settings).list(pid)) == 2


def test_compare_versions_side_by_side(gt_project, settings):
    pid, ids = gt_project
    result = compare_versions(settings, pid, ["v-cheap", "v-good"], CompareOptions(progress=False))
    assert [r["version"] for r in result["table"]] == ["v-good", "v-cheap"]
    assert result["table"][0]["best"]
    assert result["table"][1]["score_delta"] == pytest.approx(0.924307 - 0.978869, abs=1e-6)
    assert result["alpha"]["sentiment"] == pytest.approx(1709 / 2222)  # v-good, v-cheap, ground truth
    assert len(open_history(settings).list(pid)) == 2
    with pytest.raises(ScoringError):
        compare_versions(settings, pid, ["v-good"], CompareOptions(progress=False))


# ---------------------------------------------------------------- commands

@pytest.fixture
def cli_env(label_studio, tmp_path, monkeypatch):
    """Label Studio settings for `python -m scoring` (Settings.from_env reads them)."""
    for name in ("REDIS_URL", "SCORING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_score_command_prints_a_summary_and_writes_json_and_html(gt_project, cli_env, capsys, label_studio):
    pid, ids = gt_project
    out_json, out_html = cli_env / "r.json", cli_env / "r.html"
    code = main(["score", "--project", str(pid), "--version", "v-good", "--json", str(out_json),
                 "--html", str(out_html), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "v-good vs ground_truth: score 0.979 [0.922, 0.996] over 18 task(s), 2 skipped" in printed.out
    assert f"/projects/{pid}/data?task={ids['t03']}" in printed.out
    report = json.loads(out_json.read_text())
    for key in ("version", "reference", "n_tasks", "n_skipped", "score", "per_control", "per_label", "confusion",
                "kappa", "alpha", "tasks", "cost", "run_id"):
        assert key in report
    html = out_html.read_text()
    assert f"{label_studio.url}/projects/{pid}/data?task={ids['t03']}" in html
    assert "<h2>Score over time</h2>" in html  # this run is in the history the report plots
    assert label_studio.token not in printed.out + printed.err + html + out_json.read_text()


def test_score_command_with_write_back(label_studio, cli_env, capsys):
    pid, _ = make_fixture.build_project(label_studio.sdk(), title="cli write-back")
    LabelStudioClient(label_studio.settings()).set_model_version(pid, "v-good")
    code = main(["score", "--project", str(pid), "--version", "v-cheap", "--write-back", "--make-current",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "'eval(v-cheap vs ground_truth)' now has 19 prediction(s) (19 written, 0 replaced or removed" in out
    assert f"python -m scoring activate --project {pid} --backend (back to 'v-good'" in out
    assert main(["score", "--project", str(pid), "--version", "v-cheap", "--write-back", "--no-progress"]) == 0
    assert "now has 19 prediction(s) (0 written, 0 replaced or removed, 19 unchanged)" in capsys.readouterr().out


def test_make_current_needs_write_back(cli_env, capsys):
    assert main(["score", "--project", "1", "--version", "v", "--make-current"]) == 2
    assert "--make-current needs --write-back" in capsys.readouterr().err


def test_compare_command(gt_project, cli_env, capsys):
    pid, _ = gt_project
    code = main(["compare", "--project", str(pid), "--versions", "v-good", "v-cheap", "--no-progress",
                 "--json", str(cli_env / "c.json"), "--html", str(cli_env / "c.html")])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("v-good", "v-cheap"))]
    assert [(cells[0], cells[1]) for cells in lines] == [("v-good", "0.979"), ("v-cheap", "0.924")]
    assert "alpha of 'sentiment' across 3 sources: 0.769" in out
    assert json.loads((cli_env / "c.json").read_text())["table"][0]["version"] == "v-good"
    assert (cli_env / "c.html").exists()


def test_score_command_when_label_studio_is_down(cli_env, capsys, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "never-printed-key-123")
    code = main(["score", "--project", "1", "--version", "v", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and url in err
    assert "never-printed-key-123" not in err and "Traceback" not in err


def test_score_command_unknown_version_is_one_line(gt_project, cli_env, capsys):
    pid, _ = gt_project
    assert main(["score", "--project", str(pid), "--version", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: version 'nope' has no predictions") and err.count("\n") == 1
