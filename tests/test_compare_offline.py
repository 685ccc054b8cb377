"""Paired comparison of versions (scoring.compare) and ``python -m scoring compare --export``, on the committed
Label Studio export (tests/fixtures/ls_export: v-good and v-cheap, hand-computed in its README); the verdict both
ways; and the live ``compare --project`` keys against a real Label Studio."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from scoring.cli import main
from scoring.compare import PairOptions, paired_comparison, verdict
from scoring.engine import evaluate
from scoring.export import load_export

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ls_export"
EXPORT, CONFIG = str(FIXTURE / "export.json"), str(FIXTURE / "config.xml")
# v-cheap − v-good on the 18 tasks both scored (t01–t18; README): v-good 17.619643, v-cheap 17.561842 − 1 (t20)
DIFF = (16.561842 - 17.619643) / 18


@pytest.fixture(scope="module")
def tasks():
    return load_export(EXPORT)


@pytest.fixture(scope="module")
def config():
    return (FIXTURE / "config.xml").read_text()


@pytest.fixture(scope="module")
def reports(tasks, config):
    return [evaluate(tasks, config, v) for v in ("v-good", "v-cheap")]


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_pair_on_shared_tasks_with_mcnemar_for_exact_match(reports):
    result = paired_comparison(reports)
    assert [v["version"] for v in result["versions"]] == ["v-good", "v-cheap"]
    assert [v["n_compared"] for v in result["versions"]] == [18, 19]
    assert all(v["score_ci"][0] < v["score"] < v["score_ci"][1] for v in result["versions"])
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"], pair["n_shared"]) == ("v-good", "v-cheap", 18)
    assert pair["diff"] == pytest.approx(DIFF, abs=1e-6)
    lo, hi = pair["diff_ci"]
    assert lo < pair["diff"] < hi < 0
    assert 0 < pair["p_value"] < 0.05 and pair["p_adjusted"] == pair["p_value"]   # two versions: no adjustment
    assert pair["significant"] is True
    assert pair["mcnemar"] is None                                # task scores are not 0/1
    sentiment = pair["per_control"]["sentiment"]
    # only v-good is right on t02 and t05 (v-cheap wrong), both wrong on t03: b = 2, c = 0, p = 2 * 0.5^2
    assert sentiment["mcnemar"] == {"b": 2, "c": 0, "p_value": 0.5}
    assert sentiment["diff"] == pytest.approx(-2 / 18)
    assert pair["per_control"]["ner"]["mcnemar"] is None          # span F1 is not exact match
    assert set(pair["per_control"]) == {"sentiment", "ner", "summary", "quality"}
    json.dumps(result)                                            # plain JSON


def test_three_versions_get_holm_and_a_null_interval_where_nothing_varies(tasks, config):
    tasks = copy.deepcopy(tasks)
    for t in tasks:   # v-copy: the same predictions as v-good
        t["predictions"] += [dict(p, id=None, model_version="v-copy") for p in t["predictions"]
                             if p.get("model_version") == "v-good"]
    reports = [evaluate(tasks, config, v) for v in ("v-good", "v-cheap", "v-copy")]
    result = paired_comparison(reports)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert set(pairs) == {("v-good", "v-cheap"), ("v-good", "v-copy"), ("v-cheap", "v-copy")}
    same = pairs[("v-good", "v-copy")]
    assert (same["diff"], same["diff_ci"], same["p_value"]) == (0.0, None, 1.0)   # undefined: null, not [0, 0]
    ps = sorted(p["p_value"] for p in result["pairs"])
    adjusted = sorted(p["p_adjusted"] for p in result["pairs"])
    assert adjusted[0] == pytest.approx(min(1.0, 3 * ps[0]))                     # Holm: smallest p times 3
    assert all(a >= p for a, p in zip(adjusted, ps, strict=True))


@pytest.mark.parametrize("margin, expected", [
    (0.15, "v-cheap is not worse than v-good by more than 0.15 (diff -0.059 ["),
    (0.02, "The data cannot tell whether v-cheap is within 0.02 of v-good (diff -0.059 ["),
    (0.01, "v-cheap is worse than v-good by more than 0.01 (diff -0.059 ["),
])
def test_verdict_both_ways(reports, margin, expected):
    text, pick = verdict(reports, {"v-good": 0.016, "v-cheap": 0.001}, PairOptions(margin=margin))
    assert text.startswith(expected)
    assert "18 shared tasks" in text
    if margin == 0.15:
        assert pick == "v-cheap" and text.endswith("at 1/16 of the cost")
    else:
        assert pick is None
    if margin == 0.02:   # says roughly how many more ground-truth tasks would tell
        assert "more shared ground-truth tasks would" in text


def test_verdict_when_the_best_is_also_the_cheapest(reports):
    text, pick = verdict(reports, {"v-good": 0.001, "v-cheap": 0.002})
    assert pick is None and text.startswith("v-good scores best (0.979) and no other version costs less")


def test_offline_compare_command(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    html = tmp_path / "cmp.html"
    code, printed, err = run_cli(["compare", "--export", EXPORT, "--label-config", CONFIG, "--versions", "v-good",
                                  "v-cheap", "--json", str(out), "--html", str(html), "--tolerance", "0.15"], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert set(result) >= {"reference", "versions", "pairs", "verdict"}
    assert result["reference"] == "ground_truth" and result["margin"] == 0.15     # --tolerance: alias of --margin
    assert set(result["versions"][0]) == {"version", "score", "score_ci", "n_compared"}
    assert set(result["pairs"][0]) >= {"a", "b", "n_shared", "diff", "diff_ci", "p_value", "p_adjusted",
                                       "significant", "per_control"}
    assert set(result["pairs"][0]["per_control"]["ner"]) >= {"diff", "diff_ci", "p_value"}
    assert result["verdict"].startswith("v-cheap is not worse than v-good by more than 0.15")
    assert "v-good                   0.979 [" in printed and "diff v-cheap − v-good: -0.059 [" in printed
    assert "verdict: v-cheap is not worse" in printed
    page = html.read_text()
    assert "Paired differences on shared tasks" in page and "forest plot of the paired differences" in page
    assert "Verdict:" in page


def test_offline_compare_level_changes_the_width(tmp_path, capsys):
    widths = []
    for level in ("0.8", "0.99"):
        out = tmp_path / f"{level}.json"
        assert run_cli(["compare", "--export", EXPORT, "--label-config", CONFIG, "--versions", "v-good", "v-cheap",
                        "--json", str(out), "--level", level], capsys)[0] == 0
        ci = json.loads(out.read_text())["pairs"][0]["diff_ci"]
        widths.append(ci[1] - ci[0])
    assert widths[0] < widths[1]


@pytest.mark.parametrize("args, message", [
    (["--versions", "v-good", "v-cheap"], "--export needs --label-config"),
    (["--label-config", CONFIG, "--versions", "v-good"], "at least two versions"),
    (["--label-config", CONFIG, "--versions", "v-good", "nope"], "version 'nope' has no predictions"),
    (["--label-config", CONFIG, "--versions", "v-good", "v-cheap", "--against", "v-good"], "is the reference"),
])
def test_offline_compare_errors_are_one_line(capsys, args, message):
    code, printed, err = run_cli(["compare", "--export", EXPORT, *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_level_must_be_between_0_and_1(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--export", EXPORT, "--label-config", CONFIG, "--versions", "a", "b", "--level", "95"])
    assert exc.value.code == 2 and "confidence level must be a number between 0 and 1" in capsys.readouterr().err


# ---------------------------------------------------------------- live compare against a real Label Studio

@pytest.mark.labelstudio
def test_live_compare_gains_the_paired_keys(label_studio, tmp_path, monkeypatch, capsys):
    from scoring.pipeline import CompareOptions, compare_versions
    from tests.fixtures.ls_export import make_fixture

    pid, _ = make_fixture.build_project(label_studio.sdk(), title="compare paired")
    settings = label_studio.settings(data_dir=str(tmp_path))
    result = compare_versions(settings, pid, ["v-cheap", "v-good"], CompareOptions(progress=False, margin=0.15))
    assert {"project", "reference", "reports", "table", "cheapest_good_enough", "alpha"} <= set(result)  # kept
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"], pair["n_shared"]) == ("v-cheap", "v-good", 18)
    assert pair["diff"] == pytest.approx(-DIFF, abs=1e-6)
    assert [v["version"] for v in result["versions"]] == ["v-cheap", "v-good"]
    assert result["reports"][0]["score_ci"] is not None and "ci" in result["reports"][0]["per_control"]["ner"]
    # no ledger records, so no prices: every other version is a candidate, v-cheap is non-inferior at 0.15
    assert result["verdict"].startswith("v-cheap is not worse than v-good by more than 0.15")
    assert result["cheapest_good_enough"]["version"] == "v-cheap"

    for name in ("REDIS_URL", "SCORING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "live.json"
    code = main(["compare", "--project", str(pid), "--versions", "v-good", "v-cheap", "--json", str(out),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["pairs"][0]["diff"] == pytest.approx(DIFF, abs=1e-6) and saved["verdict"]
    assert "verdict: The data cannot tell whether v-cheap is within 0.02 of v-good" in printed
