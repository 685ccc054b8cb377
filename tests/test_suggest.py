"""``python -m scoring suggest``: the draw (known inclusion probabilities, favouring disagreement, unbiased
weighted estimates) on the committed export, and the Data Manager tab in a real Label Studio holding exactly the
picked tasks."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ScoringError
from scoring.commands.suggest import pick_tasks, tab_data
from scoring.export import load_export
from scoring.stats import ht_mean

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ls_export"


@pytest.fixture(scope="module")
def config():
    return (FIXTURE / "config.xml").read_text()


@pytest.fixture(scope="module")
def unannotated():
    tasks = copy.deepcopy(load_export(str(FIXTURE / "export.json")))
    for t in tasks:
        t["annotations"] = []
    return tasks


def by_ref(tasks):
    return {t["id"]: t["data"]["ref"] for t in tasks}


def test_only_unannotated_tasks_with_both_versions_are_candidates(config):
    tasks = load_export(str(FIXTURE / "export.json"))       # every task but t19 has ground truth
    result = pick_tasks(tasks, config, ("v-good", "v-cheap"), n=5)
    assert result["n_candidates"] == 1
    assert [by_ref(tasks)[t["id"]] for t in result["tasks"]] == ["t19"]
    (t19,) = result["tasks"]
    assert t19["inclusion"] == 1.0 and t19["disagreement"] == pytest.approx(0.25)   # only sentiment differs


def test_picks_favour_disagreement_with_known_probabilities(unannotated, config):
    result = pick_tasks(unannotated, config, ("v-good", "v-cheap"), n=6, seed=3)
    assert result["n_candidates"] == 19                      # t20 has no v-good prediction
    assert (result["n_requested"], result["seed"], result["floor"]) == (6, 3, 0.05)
    picks = result["tasks"]
    assert picks and all(0 < t["inclusion"] <= 1 for t in picks)
    # inclusion grows with disagreement: pi = min(1, c * (d + floor)), the same c for every task
    ratios = {round(t["inclusion"] / (t["disagreement"] + 0.05), 9) for t in picks if t["inclusion"] < 1}
    assert len(ratios) <= 1
    assert pick_tasks(unannotated, config, ("v-good", "v-cheap"), n=6, seed=3) == result     # seeded
    json.dumps(result)


def test_weighting_by_inclusion_is_unbiased_and_a_plain_average_is_not(unannotated, config):
    """Over many draws, the Horvitz-Thompson mean of the picks' disagreement matches the mean over all candidates;
    the plain mean of the picks over-weights the disagreements."""
    full = pick_tasks(unannotated, config, ("v-good", "v-cheap"), n=100)        # n >= candidates: every task, pi 1
    truth = float(np.mean([t["disagreement"] for t in full["tasks"]]))
    ht, plain = [], []
    for seed in range(400):
        r = pick_tasks(unannotated, config, ("v-good", "v-cheap"), n=5, seed=seed)
        d, pi = [t["disagreement"] for t in r["tasks"]], [t["inclusion"] for t in r["tasks"]]
        ht.append(ht_mean(d, pi, n_total=r["n_candidates"]).score or 0.0)
        if d:
            plain.append(float(np.mean(d)))
    assert np.mean(ht) == pytest.approx(truth, abs=0.1 * truth)
    assert np.mean(plain) > 1.5 * truth


@pytest.mark.parametrize("versions, n, message", [
    (("v-good", "v-good"), 5, "two different model versions"),
    (("v-good", "v-cheap"), 0, "--n must be at least 1"),
    (("v-good", "nope"), 5, "no unannotated task has predictions of both v-good and nope"),
])
def test_bad_requests(unannotated, config, versions, n, message):
    with pytest.raises(ScoringError, match=message):
        pick_tasks(unannotated, config, versions, n=n)


def test_tab_filter_is_one_id_per_task():
    data = tab_data([7, 3])
    assert data["filters"]["conjunction"] == "or"
    assert [i["value"] for i in data["filters"]["items"]] == [7, 3]


# ---------------------------------------------------------------- against a real Label Studio

@pytest.mark.labelstudio
def test_suggest_creates_a_tab_with_exactly_the_picked_tasks(label_studio, tmp_path, monkeypatch, capsys):
    from core.labelstudio import LabelStudioClient
    from scoring.cli import main
    from tests.fixtures.ls_export import make_fixture

    pid, ids = make_fixture.build_project(label_studio.sdk(), title="suggest next", with_annotations=False)
    for name in ("REDIS_URL", "SCORING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    client = LabelStudioClient(label_studio.settings(data_dir=str(tmp_path)))

    tabs = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}.json"
        code = main(["suggest", "--project", str(pid), "--versions", "v-good", "v-cheap", "--n", "6",
                     "--seed", str(seed), "--json", str(out), "--no-progress"])
        printed = capsys.readouterr().out
        assert code == 0
        result = json.loads(out.read_text())
        picked = sorted(t["id"] for t in result["tasks"])
        assert picked and result["n_candidates"] == 19 and ids["t20"] not in picked
        assert result["tab"]["title"] == "Annotate next: v-good vs v-cheap"
        assert "Data Manager tab 'Annotate next: v-good vs v-cheap'" in printed
        shown = sorted(r["id"] for r in client.view_tasks(pid, result["tab"]["id"]))
        assert shown == picked                      # exactly those tasks, nothing else
        tabs.append((result["tab"]["id"], picked))
    assert tabs[0][0] == tabs[1][0]                  # the rerun updates the same tab in place
    titles = [v["title"] for v in client.views(pid)]
    assert titles.count("Annotate next: v-good vs v-cheap") == 1
