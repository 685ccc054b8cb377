"""Calibration of confidence on ground truth (scoring.calibration, ``python -m scoring calibrate``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.calibration import CalibrationMap, CalibrationStore
from backend.predictor import Predictor
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG, make_tasks
from fakellm.noisy import demo_source
from scoring.calibration import MIN_FIT, MIN_ISOTONIC, calibrate, confidence_sample, fit_map
from scoring.cli import main
from tests.test_confidence import versions

N = 300


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The demo tasks with ground truth and a logprobs version's predictions (as a Label Studio export)."""
    from fakellm import FakeLLM

    tmp = tmp_path_factory.mktemp("cal")
    with FakeLLM(demo_source(N)) as fake:
        settings = Settings(openai_api_key="k", openai_base_url=fake.openai_base_url, provider_max_retries=0,
                            data_dir=str(tmp / "var"), response_cache=False, predict_concurrency=4)
        tasks = make_tasks(N)
        predictor = Predictor(settings, versions("logprobs"))
        outcomes = predictor.predict(tasks, LABEL_CONFIG, "v1", project="5")
    for task, o in zip(tasks, outcomes, strict=True):
        task["predictions"] = [dict(predictor.prediction(o, "v1"), id=task["id"] + 1000)]
    path = tmp / "export.json"
    path.write_text(json.dumps(tasks))
    (tmp / "config.xml").write_text(LABEL_CONFIG)
    return tmp, tasks


def test_calibration_lowers_held_out_ece_on_the_stand_in(export):
    _, tasks = export
    ids, conf, right = confidence_sample(tasks, LABEL_CONFIG, "v1")
    assert len(ids) == N and 0.5 < right.mean() < 0.85
    cmap, report = calibrate(conf, right)
    assert cmap.method == "isotonic" and report["warning"] is None
    # the stand-in is over-confident by design (sharpness 2): raw ECE is large, the held-out calibrated one small
    assert report["ece_before"] > 0.15
    assert report["ece_after"] < report["ece_before"] / 2
    assert report["brier_after"] < report["brier_before"]
    assert report["auroc"] > 0.75
    acc = [p["accuracy"] for p in report["coverage_accuracy"]]
    assert acc[0] > acc[-1]  # the most confident tasks are the most accurate
    assert all(np.diff(cmap.ys) >= 0)  # monotone


def test_small_ground_truth_falls_back():
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=MIN_ISOTONIC - 1)
    right = (rng.uniform(size=conf.size) < conf).astype(float)
    cmap, warning = fit_map(conf, right)
    assert cmap.method == "logistic" and "Platt" in str(warning)
    assert cmap(0.9) > cmap(0.1)
    cmap, warning = fit_map(conf[:MIN_FIT - 1], right[:MIN_FIT - 1])
    assert cmap.method == "identity" and cmap(0.37) == 0.37 and "identity" in str(warning)
    cmap, warning = fit_map(conf, np.ones_like(conf))
    assert cmap.method == "identity" and "every ground-truth task is right" in str(warning)


def test_calibrate_cli_offline_writes_json_and_figures(export, capsys):
    tmp, _ = export
    out, page = tmp / "cal.json", tmp / "cal.html"
    code = main(["calibrate", "--export", str(tmp / "export.json"), "--label-config", str(tmp / "config.xml"),
                 "--version", "v1", "--json", str(out), "--html", str(page)])
    assert code == 0
    line = capsys.readouterr().out
    assert "AUROC" in line and "ECE" in line and "map: isotonic" in line
    report = json.loads(out.read_text())
    assert report["n"] == N and report["reliability_after"]
    html = page.read_text()
    assert "Confidence calibration" in html and 'alt="reliability diagram"' in html
    assert 'alt="coverage-accuracy curve"' in html


def test_calibrate_cli_needs_scores(tmp_path, capsys):
    tasks = make_tasks(5)
    for t in tasks:
        t["predictions"] = [{"id": t["id"], "model_version": "v1", "score": None,
                             "result": t["annotations"][0]["result"]}]
    (tmp_path / "e.json").write_text(json.dumps(tasks))
    (tmp_path / "c.xml").write_text(LABEL_CONFIG)
    code = main(["calibrate", "--export", str(tmp_path / "e.json"), "--label-config", str(tmp_path / "c.xml"),
                 "--version", "v1"])
    assert code == 2 and "set `confidence:` on the version" in capsys.readouterr().err


def test_store_round_trip_sqlite_and_redis(tmp_path):
    import uuid

    cmap = CalibrationMap([0.1, 0.9], [0.2, 0.7], "isotonic", 80, report={"auroc": 0.8})
    store = CalibrationStore(Settings(data_dir=str(tmp_path)))
    store.put("v1", 7, cmap)
    assert store.get("v1", "7") == cmap and store.get("v1", 8) is None
    version = f"test-cal-{uuid.uuid4().hex}"  # a unique field in the shared Redis; removed below
    redis_store = CalibrationStore(Settings(redis_url="redis://127.0.0.1:6379/0"))
    try:
        redis_store.put(version, 7, cmap)
        assert redis_store.get(version, 7) == cmap
    finally:
        redis_store.delete(version, 7)
    assert redis_store.get(version, 7) is None
