"""evaluate on a real Label Studio 1.23.2 snapshot export (tests/fixtures/ls_export).

The expected numbers are worked out by hand in tests/fixtures/ls_export/README.md
from the differences between each version's predictions and the ground truth."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.engine import alpha_multi, evaluate
from scoring.export import ground_truth, load_export, prediction_of

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "ls_export"


@pytest.fixture(scope="module")
def tasks():
    return load_export(str(FIXTURE / "export.json"))


@pytest.fixture(scope="module")
def config():
    return (FIXTURE / "config.xml").read_text()


def no_ci(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.endswith("_ci")}


def by_ref(report, tasks):
    ref = {t["id"]: t["data"]["ref"] for t in tasks}
    return {ref[t["id"]]: t for t in report["tasks"]}


def test_export_is_what_the_readme_says(tasks):
    assert len(tasks) == 20
    refs = {t["data"]["ref"]: t for t in tasks}
    assert ground_truth(refs["t19"]) is None
    assert all(ground_truth(t) is not None for r, t in refs.items() if r != "t19")
    assert prediction_of(refs["t20"], "v-good") is None
    assert all(prediction_of(t, "v-cheap") is not None for t in tasks)


def test_v_good_against_ground_truth(tasks, config):
    r = evaluate(tasks, config, "v-good")
    assert (r["n_tasks"], r["n_compared"], r["n_skipped"]) == (20, 18, 2)
    assert r["score"] == pytest.approx((14 + 0.75 + 0.95 + 0.9375 + (3 + 13 / 14) / 4) / 18)
    per = by_ref(r, tasks)
    assert per["t03"]["per_control"]["sentiment"] == 0.0
    assert per["t07"]["per_control"]["ner"] == pytest.approx(0.8)          # 2*2/(2+3)
    assert per["t12"]["per_control"]["quality"] == 0.75                    # 1 - 1/4
    assert per["t15"]["per_control"]["summary"] == pytest.approx(13 / 14)  # one character of 14
    assert r["kappa"]["sentiment"] == pytest.approx(194 / 212)
    assert r["alpha"]["sentiment"] == pytest.approx(1 - 35 * 2 / 846)
    s = r["per_label"]["sentiment"]
    assert no_ci(s["Positive"]) == {"precision": 7 / 8, "recall": 1.0, "f1": pytest.approx(14 / 15), "support": 7}
    assert no_ci(s["Neutral"]) == {"precision": 1.0, "recall": 4 / 5, "f1": pytest.approx(8 / 9), "support": 5}
    assert no_ci(s["Negative"]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 6}
    assert sorted(x["reason"] for x in r["skipped"]) == ["no ground truth", "no prediction of version 'v-good'"]
    assert r["per_control"]["ner"]["n"] == 18


def test_v_cheap_against_ground_truth(tasks, config):
    r = evaluate(tasks, config, "v-cheap")
    assert (r["n_compared"], r["n_skipped"]) == (19, 1)
    assert r["score"] == pytest.approx((10 + 4 * 0.75 + 3 * 0.875 + (3 + 18 / 19) / 4 + 0.95) / 19)
    per = by_ref(r, tasks)
    assert per["t08"]["per_control"]["ner"] == 0.5      # Wayne Enterprises as PER instead of ORG
    assert per["t09"]["per_control"]["summary"] == 0.0  # no summary region
    assert per["t11"]["per_control"]["ner"] == 1.0      # IoU exactly 0.5 matches
    assert per["t13"]["per_control"]["ner"] == 0.5      # IoU 3/8 does not
    assert per["t14"]["per_control"]["quality"] == 0.5
    assert r["kappa"]["sentiment"] == pytest.approx(182 / 239)
    assert r["alpha"]["sentiment"] == pytest.approx(1 - 37 * 6 / 954)
    cm = r["confusion"]["sentiment"]
    assert cm["labels"] == ["Positive", "Negative", "Neutral"]
    assert sum(map(sum, cm["matrix"])) == 19 and sum(cm["matrix"][i][i] for i in range(3)) == 16


def test_model_against_model(tasks, config):
    r = evaluate(tasks, config, "v-good", against="v-cheap")
    assert (r["n_compared"], r["n_skipped"]) == (19, 1)
    assert r["score"] == pytest.approx(17.181485 / 19, abs=1e-6)
    worst = sorted(by_ref(r, tasks).items(), key=lambda kv: kv[1]["score"])[:5]
    assert sorted(ref for ref, _ in worst) == ["t02", "t03", "t05", "t09", "t19"]
    assert r["kappa"]["sentiment"] == pytest.approx(160 / 236)
    assert r["alpha"]["sentiment"] == pytest.approx(1 - 37 * 8 / 944)


def test_alpha_over_three_sources_is_defined(tasks, config):
    a = alpha_multi(tasks, config, ["v-good", "v-cheap", "ground_truth"], "sentiment")
    assert a is not None and 0.6 < a < 1.0
    assert a == pytest.approx(1709 / 2222)   # the same three sources as compare_versions on this project


def test_cli_on_the_fixture(tmp_path):
    out = tmp_path / "r.json"
    python = ROOT / ".venv" / "bin" / "python"
    p = subprocess.run([str(python) if python.exists() else sys.executable, "-m", "scoring", "evaluate",
                        "--export", str(FIXTURE / "export.json"), "--label-config", str(FIXTURE / "config.xml"),
                        "--version", "v-cheap", "--json", str(out), "--html", str(tmp_path / "r.html")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    report = json.loads(out.read_text())
    assert report["version"] == "v-cheap" and report["reference"] == "ground_truth"
    assert round(report["score"], 6) == 0.924307
    assert (tmp_path / "r.html").stat().st_size > 1000
