"""Confidence per control and task (backend.confidence) through the real openai SDK and the stand-in LLM."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from backend.calibration import CalibrationMap, CalibrationStore
from backend.confidence import logprob_confidence, value_spans
from backend.ledger import open_ledger
from backend.predictor import Predictor
from backend.schema import plan_for
from backend.versions import parse_versions
from core.errors import VersionError
from core.settings import Settings
from fakellm.dataset import LABEL_CONFIG, make_tasks
from fakellm.noisy import demo_source

N = 120


def versions(confidence, provider="openai", model="gpt-fake"):
    return parse_versions({"versions": [{"id": "v1", "provider": provider, "model": model,
                                         "instruction": "Label this review.\n<text>{text}</text>",
                                         "confidence": confidence}]})


@pytest.fixture
def settings(tmp_path, fake_llm):
    fake_llm.set_answers(demo_source(N))
    return Settings(openai_api_key="k", openai_base_url=fake_llm.openai_base_url, provider_max_retries=0,
                    data_dir=str(tmp_path / "var"), response_cache=False, predict_concurrency=4)


def correct(outcome, task) -> bool:
    """Every control of the prediction equals the ground truth (value-wise)."""
    def norm(result):
        return sorted(repr(sorted((k, v) for k, v in r["value"].items())) + r["from_name"] for r in result)
    return norm(outcome.regions) == norm(task["annotations"][0]["result"])


def design_auroc(n=200_000, scale=0.6, controls=3) -> float:
    """The AUROC the stand-in's design allows: p(d) = 1 - scale d^2 per control, as a score for "all right"."""
    rng = np.random.default_rng(0)
    p = 1 - scale * rng.uniform(size=n) ** 2
    right = np.all(rng.uniform(size=(controls, n)) < p, axis=0)
    return float(roc_auc_score(right, p))


def run(settings, confidence, n=N):
    tasks = make_tasks(n)
    ledger = open_ledger(settings)
    predictor = Predictor(settings, versions(confidence), ledger=ledger)
    outcomes = predictor.predict(tasks, LABEL_CONFIG, "v1", project="3")
    return tasks, outcomes, predictor, ledger


def test_logprobs_scores_every_prediction_and_separate_right_from_wrong(settings, fake_llm):
    tasks, outcomes, predictor, ledger = run(settings, "logprobs")
    assert all(r["body"].get("logprobs") is True for r in fake_llm.requests)
    preds = [predictor.prediction(o, "v1") for o in outcomes]
    scores = [p["score"] for p in preds]
    assert all(isinstance(s, float) and 0 <= s <= 1 for s in scores)
    right = [correct(o, t) for o, t in zip(outcomes, tasks, strict=True)]
    assert 0.2 < 1 - sum(right) / len(right) < 0.6  # the stand-in is wrong on a fair share of tasks
    # the stand-in reports a noisy function of p(d), which knows how hard the task is, not whether this answer
    # is wrong: the AUROC is bounded by that of p(d) itself (~0.87); 0.1 below leaves room for 120 tasks' noise
    bound = design_auroc()
    assert bound - 0.1 < roc_auc_score(right, scores) < bound + 0.05
    rec = {r.task_id: r for r in ledger.records("v1", "3")}
    assert set(rec[1].confidence) == {"sentiment", "entities", "summary"}
    assert rec[1].samples == 1
    assert preds[0]["score"] == pytest.approx(min(rec[1].confidence.values()), abs=1e-6)


def test_consistency_costs_k_calls_and_is_informative(settings, fake_llm):
    tasks, outcomes, predictor, ledger = run(settings, {"method": "consistency", "samples": 4}, n=60)
    assert len(fake_llm.requests) == 4 * 60
    sampled = [r["body"] for r in fake_llm.requests if r["body"].get("temperature")]
    assert len(sampled) == 3 * 60 and {b["seed"] for b in sampled} == {1, 2, 3}
    recs = ledger.records("v1", "3")
    assert all(r.samples == 4 for r in recs)
    one = open_ledger(settings)  # tokens: 4 calls' worth per task
    assert one.summary("v1", "3")["input_tokens"] > 3.5 * sum(r.input_tokens for r in recs) / 4
    scores = [predictor.prediction(o, "v1")["score"] for o in outcomes]
    assert {s for s in scores} <= {0.25, 0.5, 0.75, 1.0}
    right = [correct(o, t) for o, t in zip(outcomes, tasks, strict=True)]
    assert roc_auc_score(right, scores) > 0.65


def test_verbalized_key_added_then_removed(settings, fake_llm):
    tasks, outcomes, predictor, _ = run(settings, "verbalized", n=10)
    schema = fake_llm.requests[0]["body"]["response_format"]["json_schema"]["schema"]
    assert "answer_confidence" in schema["required"]
    assert all(o.ok for o in outcomes)
    assert all(0.8 <= predictor.prediction(o, "v1")["score"] <= 1.0 for o in outcomes)


def test_none_keeps_score_null(settings, fake_llm):
    _, outcomes, predictor, ledger = run(settings, None, n=3)
    assert [predictor.prediction(o, "v1")["score"] for o in outcomes] == [None] * 3
    assert "logprobs" not in fake_llm.requests[0]["body"]
    assert ledger.records("v1", "3")[0].confidence == {}


def test_calibration_map_is_applied_to_new_predictions(settings):
    CalibrationStore(settings).put("v1", "3", CalibrationMap(xs=[0.0, 1.0], ys=[0.5, 0.5], method="identity"))
    _, outcomes, predictor, _ = run(settings, "logprobs", n=4)
    assert [predictor.prediction(o, "v1")["score"] for o in outcomes] == [0.5] * 4


def test_logprobs_refused_at_load_time_for_anthropic():
    with pytest.raises(VersionError, match="anthropic does not return"):
        versions("logprobs", provider="anthropic")
    with pytest.raises(VersionError, match="samples` must be an integer >= 2"):
        versions({"method": "consistency", "samples": 1})
    assert versions({"method": "consistency"}, provider="anthropic").get("v1").confidence.samples == 5


def test_logprob_mapping_joint_for_choices_mean_for_free_text():
    plan = plan_for(LABEL_CONFIG)
    raw = '{"sentiment": "Positive", "entities": [], "summary": "good one"}'
    assert list(value_spans(raw)) == ["sentiment", "entities", "summary"]
    tokens = [('{"', 0.0), ("sentiment", 0.0), ('": "', 0.0), ("Pos", -0.5), ("itive", -0.5), ('", "', 0.0),
              ("entities", 0.0), ('": [], "', 0.0), ("summary", 0.0), ('": "', 0.0), ("good", -1.0),
              (" one", -1.0), ('"}', 0.0)]
    conf = logprob_confidence(raw, tokens, plan)
    assert conf["sentiment"] == pytest.approx(pytest.approx(2.718281828 ** -1.0))  # joint: both tokens
    assert conf["entities"] == pytest.approx(1.0)
    # free text: mean over the tokens overlapping the value (the quotes' tokens included)
    assert conf["summary"] == pytest.approx(2.718281828 ** (-2.0 / 4))
    assert logprob_confidence(raw, tokens[:-1], plan) == {}  # tokens that do not spell the answer
