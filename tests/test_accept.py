"""Selective auto-accept (scoring.accept, ``python -m scoring accept``) and the review queue."""
from __future__ import annotations

import numpy as np
import pytest

from scoring.accept import accepted_annotation, choose_threshold, cp_lower, is_accepted_by, needed_ground_truth


def simulated_project(rng, n_gt: int, n_open: int):
    """Confidence and correctness drawn like the stand-in's (p(d) = 1 - 0.6 d^2, over-confident, noisy)."""
    d = rng.uniform(size=n_gt + n_open)
    p = 1 - 0.6 * d ** 2
    logit = np.log(p / (1 - p))
    conf = 1 / (1 + np.exp(-(2 * logit + 0.5 * rng.standard_normal(p.size))))
    right = (rng.uniform(size=p.size) < p).astype(float)
    return conf[:n_gt], right[:n_gt], conf[n_gt:], p[n_gt:]


def test_accept_rule_meets_its_target_in_at_least_95_percent_of_projects():
    rng = np.random.default_rng(11)
    target, met, accepted_projects, coverages = 0.9, 0, 0, []
    for _ in range(1000):
        conf, right, open_conf, open_p = simulated_project(rng, n_gt=300, n_open=1000)
        d = choose_threshold(conf, right, target)
        if not d.ok:
            continue
        taken = open_conf >= d.threshold
        if not taken.any():
            continue
        accepted_projects += 1
        coverages.append(taken.mean())
        met += open_p[taken].mean() >= target  # the true accuracy of what was accepted
    assert accepted_projects > 850  # the rule is usable: it accepts something in most projects
    assert met / accepted_projects >= 0.95
    assert 0.2 < float(np.median(coverages)) < 0.9


def test_the_scan_stops_at_the_first_failure():
    # 50 right at 0.99, then 10 wrong at 0.9, then 200 right at 0.5: scanning on past the failure would
    # reach a threshold of 0.5 (250 of 260 right, lower bound ~0.93); the fixed sequence stops at 0.9.
    conf = [0.99] * 50 + [0.9] * 10 + [0.5] * 200
    right = [1] * 50 + [0] * 10 + [1] * 200
    d = choose_threshold(conf, right, 0.9)
    assert d.threshold == 0.99 and d.n == 50 and d.tested == 2
    assert cp_lower(250, 260) > 0.9  # what a scan of every threshold would have accepted


def test_too_little_ground_truth_is_refused_with_the_number_needed():
    conf, right = [0.95] * 60, [1] * 60
    assert not choose_threshold(conf, right, 0.98).ok
    more = needed_ground_truth(conf, right, 0.98)
    assert more == 149 - 60  # 0.05 ** (1 / n) >= 0.98 from n = 149 on
    assert choose_threshold([0.95] * 149, [1] * 149, 0.98).ok
    assert needed_ground_truth([0.9] * 100, [1] * 90 + [0] * 10, 0.98) is None  # 90% right: never 98%


def test_accepted_annotation_is_marked_and_recognised():
    d = choose_threshold([0.9] * 100, [1] * 100, 0.95)
    pred = {"id": 5, "result": [{"from_name": "s", "to_name": "t", "type": "choices", "value": {"choices": ["A"]}}]}
    ann = accepted_annotation(3, pred, "v1", d)
    assert ann["task"] == 3 and ann["parent_prediction"] == 5
    assert ann["result"][0]["meta"]["accepted_by"] == "llm-prelabel accept"
    assert is_accepted_by(ann, "v1") and not is_accepted_by(ann, "v2")
    assert not is_accepted_by({"result": pred["result"]}, "v1")


# --------------------------------------------------------------------------- against Label Studio 1.23.2
N_GT, N_OPEN = 150, 40


@pytest.mark.labelstudio
def test_scores_review_tab_accept_and_undo_in_label_studio(label_studio, tmp_path):
    from backend.calibration import CalibrationStore
    from backend.ledger import open_ledger
    from backend.predictor import Predictor
    from core.labelstudio import LabelStudioClient
    from fakellm import FakeLLM
    from fakellm.dataset import LABEL_CONFIG, make_tasks
    from fakellm.noisy import demo_source
    from scoring.calibration import raw_from_ledger
    from scoring.cli import build_parser
    from tests.test_confidence import versions

    ls, client = label_studio.sdk(), LabelStudioClient(label_studio.settings(), backoff=0.01)
    pid = label_studio.create_project(LABEL_CONFIG, title="confidence")
    tasks = make_tasks(N_GT + N_OPEN)
    for t in tasks[N_GT:]:
        del t["annotations"]
    ls.projects.import_tasks(pid, request=[{k: v for k, v in t.items() if k != "id"} for t in tasks])
    pulled, _ = client.pull_project(pid, progress=False)
    with FakeLLM(demo_source(N_GT + N_OPEN)) as fake:
        settings = label_studio.settings(openai_api_key="k", openai_base_url=fake.openai_base_url,
                                         data_dir=str(tmp_path / "var"), response_cache=False, provider_max_retries=0)
        predictor = Predictor(settings, versions("logprobs"), ledger=open_ledger(settings))
        outcomes = predictor.predict(pulled, LABEL_CONFIG, "v1", project=str(pid))
        preds = [dict(p, task=o.task_id) for o in outcomes if (p := predictor.prediction(o, "v1"))]
    client.import_predictions(pid, preds)
    client.set_model_version(pid, "v1")
    written = client.predictions_of_version(pid, "v1")
    assert len(written) == N_GT + N_OPEN and all(isinstance(p["score"], float) for p in written)

    def cli(*argv):
        args = build_parser().parse_args([*argv, "--project", str(pid), "--version", "v1", "--no-progress"])
        return args._module.run(args, settings)

    assert cli("calibrate", "--rescore") == 0
    cmap = CalibrationStore(settings).get("v1", pid)
    raw = raw_from_ledger(open_ledger(settings).records("v1", str(pid)))
    written = client.predictions_of_version(pid, "v1")
    assert cmap.method == "isotonic" and {p["score"] for p in written} != {p["score"] for p in preds}
    assert all(p["score"] == pytest.approx(cmap(raw[p["task"]]), abs=1e-6) for p in written)
    tab = next(v for v in client.views(pid) if v["title"] == "Review: v1, least confident first")
    rows = client.view_tasks(pid, tab["id"])
    open_ids = {t["id"] for t in pulled if not t.get("annotations")}
    assert {r["id"] for r in rows} == open_ids
    scores = [r["predictions_score"] for r in rows]
    assert scores == sorted(scores) and scores[0] == min(p["score"] for p in written if p["task"] in open_ids)

    gt_before = {(a["id"], a["task"]) for t in client.pull_project(pid, progress=False)[0] for a in t["annotations"]}
    assert cli("accept", "--target-accuracy", "0.8") == 0
    after, _ = client.pull_project(pid, progress=False)
    made = [(a, t) for t in after for a in t["annotations"] if (a["id"], a["task"]) not in gt_before]
    assert made and all(t["id"] in open_ids for _, t in made)
    assert all(a["ground_truth"] is False and is_accepted_by(a, "v1") for a, _ in made)
    assert {r["id"] for r in client.view_tasks(pid, tab["id"])} == open_ids - {t["id"] for _, t in made}

    assert cli("accept", "--target-accuracy", "0.8") == 0  # idempotent: nothing new
    again = sum(len(t["annotations"]) for t in client.pull_project(pid, progress=False)[0])
    assert again == len(gt_before) + len(made)

    assert cli("accept", "--undo") == 0
    left = {(a["id"], a["task"]) for t in client.pull_project(pid, progress=False)[0] for a in t["annotations"]}
    assert left == gt_before
