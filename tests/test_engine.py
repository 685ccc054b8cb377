"""The scoring engine: evaluate() on hand-made Label Studio tasks, scoring.yaml, export loading."""
import json

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ExportError, LabelConfigError, NoReferenceError, ScoringConfigError, ScoringError
from scoring.agreement import cohen_kappa
from scoring.config import ControlConfig, ScoringConfig, load_scoring_config
from scoring.engine import (
    SKIP_CODES,
    SKIP_CUSTOM_METRIC,
    SKIP_NO_PREDICTION,
    SKIP_NO_REFERENCE,
    SKIP_RESULT_MISMATCH,
    IntervalOptions,
    alpha_multi,
    compile_schema,
    evaluate,
    score_pair,
    single_choice_values,
)
from scoring.export import ground_truth, load_export, prediction_of
from scoring.metrics.spec import ResultMismatch

CONFIG = (
    "<View>\n"
    '  <Text name="text" value="$text"/>\n'
    '  <Choices name="sentiment" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices>\n'
    '  <Choices name="topics" toName="text" choice="multiple">'
    '<Choice value="A"/><Choice value="B"/><Choice value="C"/></Choices>\n'
    '  <Labels name="ner" toName="text"><Label value="PER"/><Label value="ORG"/></Labels>\n'
    '  <TextArea name="summary" toName="text"/>\n'
    '  <Rating name="quality" toName="text" maxRating="5"/>\n'
    '  <Number name="stars" toName="text" min="0" max="10"/>\n'
    '  <Relations><Relation value="rel"/></Relations>\n'
    "</View>"
)


def ch(v, name="sentiment"):
    return {"from_name": name, "to_name": "text", "type": "choices",
            "value": {"choices": v if isinstance(v, list) else [v]}}


def sp(label, s, e):
    return {"from_name": "ner", "to_name": "text", "type": "labels", "value": {"start": s, "end": e, "labels": [label]}}


def ta(*texts):
    return {"from_name": "summary", "to_name": "text", "type": "textarea", "value": {"text": list(texts)}}


def ra(n):
    return {"from_name": "quality", "to_name": "text", "type": "rating", "value": {"rating": n}}


def num(x):
    return {"from_name": "stars", "to_name": "text", "type": "number", "value": {"number": x}}


def task(tid, gt=None, **preds):
    t = {"id": tid, "data": {"text": "x"}, "annotations": [], "predictions": []}
    if gt is not None:
        t["annotations"].append({"id": tid * 10, "ground_truth": True, "result": gt})
    for k, (version, result) in enumerate(preds.items()):
        t["predictions"].append({"id": tid * 10 + k + 1, "model_version": version.replace("_", "-"), "result": result})
    return t


def no_ci(entry: dict) -> dict:
    """An entry without the interval keys the engine adds beside each estimate."""
    return {k: v for k, v in entry.items() if not k.endswith("ci")}


def only(report, tid):
    return next(t for t in report["tasks"] if t["id"] == tid)


# ---------------------------------------------------------------- evaluate

def test_identical_results_score_one_and_empty_controls_count_as_agreement():
    full = [ch("Positive"), ch(["A", "B"], "topics"), sp("PER", 0, 4), ta("hi"), ra(3), num(2)]
    r = evaluate([task(1, full, v1=full), task(2, [ch("Negative")], v1=[ch("Negative")])], CONFIG, "v1")
    assert r["score"] == 1.0
    assert only(r, 2)["per_control"] == {"sentiment": 1.0, "topics": 1.0, "ner": 1.0, "summary": 1.0,
                                         "quality": 1.0, "stars": 1.0}
    assert r["n_tasks"] == r["n_compared"] == 2 and r["n_skipped"] == 0 and r["skipped"] == []
    assert all(pc["n"] == 2 for pc in r["per_control"].values())


def test_one_side_empty_scores_zero():
    r = evaluate([task(1, [ch("Positive"), ta("hello")], v1=[ch("Positive"), sp("PER", 0, 3)])], CONFIG, "v1")
    pc = only(r, 1)["per_control"]
    assert pc["summary"] == 0.0 and pc["ner"] == 0.0 and pc["sentiment"] == 1.0
    assert only(r, 1)["score"] == pytest.approx(4 / 6)


def test_per_task_score_is_weighted_mean_and_overall_is_mean_of_tasks():
    cfg = ScoringConfig(controls={"sentiment": ControlConfig(weight=3.0), "stars": ControlConfig(weight=0.0)})
    tasks = [
        task(1, [ch("Positive"), ra(5), num(0)], v1=[ch("Negative"), ra(4), num(10)]),   # sentiment 0, quality 0.75
        task(2, [ch("Positive")], v1=[ch("Positive")]),                                    # all 1
    ]
    r = evaluate(tasks, CONFIG, "v1", config=cfg)
    # weights: sentiment 3, topics 1, ner 1, summary 1, quality 1, stars 0 -> total 7
    assert only(r, 1)["score"] == pytest.approx((3 * 0 + 1 + 1 + 1 + 0.75 + 0 * 0.0) / 7)
    assert only(r, 1)["per_control"]["stars"] == 0.0
    assert r["score"] == pytest.approx((only(r, 1)["score"] + 1.0) / 2)
    assert no_ci(r["per_control"]["quality"]) == {"metric": "linear", "score": 0.875, "n": 2, "weight": 1.0}


def test_several_regions_of_a_control_are_merged():
    gt = [ch("A", "topics"), ch("B", "topics"), ta("one"), ta("two"), ra(2), ra(5)]
    pred = [ch(["B", "A"], "topics"), ta("one", "two"), ra(2)]
    r = evaluate([task(1, gt, v1=pred)], CONFIG, "v1")
    pc = only(r, 1)["per_control"]
    assert pc["topics"] == 1.0 and pc["summary"] == 1.0 and pc["quality"] == 1.0   # first rating counts


def test_number_and_rating_ranges_come_from_the_config():
    r = evaluate([task(1, [ra(1), num(2.5)], v1=[ra(3), num(5)])], CONFIG, "v1")
    pc = only(r, 1)["per_control"]
    assert pc["quality"] == 0.5      # 1 - 2/4
    assert pc["stars"] == 0.75       # 1 - 2.5/10


def test_alternative_metrics_from_config():
    cfg = ScoringConfig(controls={"topics": ControlConfig(metric="jaccard"),
                                  "summary": ControlConfig(metric="token_set"),
                                  "ner": ControlConfig(metric="char_overlap"),
                                  "quality": ControlConfig(metric="exact")})
    gt = [ch(["A", "B"], "topics"), ta("Kim moved to Seoul."), sp("PER", 0, 10), ra(4)]
    pred = [ch(["B", "C"], "topics"), ta("kim moved to Busan"), sp("PER", 5, 15), ra(5)]
    r = evaluate([task(1, gt, v1=pred)], CONFIG, "v1", config=cfg)
    pc = only(r, 1)["per_control"]
    assert pc == {"sentiment": 1.0, "topics": pytest.approx(1 / 3), "ner": pytest.approx(5 / 15),
                  "summary": pytest.approx(3 / 5), "quality": 0.0, "stars": 1.0}
    assert r["per_control"]["topics"]["metric"] == "jaccard"


def test_per_label_counts_over_tasks():
    tasks = [
        # PER matched, ORG predicted where reference has none (FP), reference ORG missed (FN)
        task(1, [ch("Positive"), sp("PER", 0, 5), sp("ORG", 20, 25)],
             v1=[ch("Positive"), sp("PER", 0, 4), sp("ORG", 40, 45)]),
        task(2, [ch("Negative"), sp("PER", 0, 5)], v1=[ch("Positive"), sp("PER", 0, 5), sp("LOC", 9, 12)]),
    ]
    r = evaluate(tasks, CONFIG, "v1")
    ner = r["per_label"]["ner"]
    assert set(ner) == {"PER", "ORG"}          # LOC is not in the config: left out
    assert no_ci(ner["PER"]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert no_ci(ner["ORG"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    s = r["per_label"]["sentiment"]
    assert no_ci(s["Positive"]) == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert no_ci(s["Negative"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["Neutral"]["support"] == 0
    assert "topics" in r["per_label"] and "summary" not in r["per_label"]
    # task 2 ner: PER matched (1), LOC unmatched: 2*1/(2+1)
    assert only(r, 2)["per_control"]["ner"] == pytest.approx(2 / 3)


def test_confusion_kappa_alpha_for_single_choice():
    pairs = [("Positive", "Positive"), ("Positive", "Negative"), ("Negative", "Negative"), ("Neutral", "Neutral"),
             ("Neutral", "Positive"), ("Positive", "Positive")]
    tasks = [task(i, [ch(ref)], v1=[ch(pred)]) for i, (ref, pred) in enumerate(pairs, 1)]
    tasks.append(task(99, [ch("Positive")], v1=[ta("no sentiment chosen")]))   # not in the pairs
    r = evaluate(tasks, CONFIG, "v1")
    assert r["confusion"] == {"sentiment": {"labels": ["Positive", "Negative", "Neutral"],
                                            "matrix": [[2, 1, 0], [0, 1, 0], [1, 0, 1]]}}
    refs, preds = zip(*pairs, strict=True)
    assert r["kappa"]["sentiment"] == pytest.approx(cohen_kappa(list(refs), list(preds)))
    codes = {"Positive": 0, "Negative": 1, "Neutral": 2}
    data = np.array([[codes[x] for x in refs], [codes[x] for x in preds]], dtype=float)
    expected_alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert r["alpha"]["sentiment"] == pytest.approx(expected_alpha)
    assert "topics" not in r["confusion"] and "topics" not in r["kappa"]   # multiple choice: no kappa


def test_tasks_lacking_a_side_or_matching_badly_are_skipped_and_listed():
    good = [ch("Positive")]
    tasks = [
        task(1, good, v1=good),
        task(2, None, v1=good),                                                      # no ground truth
        task(3, good),                                                               # no prediction
        task(4, good, v1=[{"from_name": "mood", "to_name": "text", "value": {}}]),   # not a control
        task(5, good, v1=[{"from_name": "quality", "value": {"rating": "high"}}]),   # bad value
        task(6, [{"from_name": "ner", "value": {"start": 0}}], v1=good),              # bad reference
        task(7, good, v1=good),
    ]
    tasks[5]["predictions"][0]["result"] = "not a list"
    r = evaluate(tasks, CONFIG, "v1")
    assert r["n_tasks"] == 7 and r["n_compared"] == 2 and r["n_skipped"] == 5
    reasons = {s["id"]: s["reason"] for s in r["skipped"]}
    assert reasons[2] == "no ground truth"
    assert reasons[3] == "no prediction of version 'v1'"
    assert "'mood' is not a control" in reasons[4]
    assert "value.rating" in reasons[5] and reasons[5].startswith("result does not match the label config: prediction")
    assert reasons[6].startswith("result does not match the label config: prediction: its result is not a list")
    assert [t["id"] for t in r["tasks"]] == [1, 7]
    codes = {s["id"]: s["code"] for s in r["skipped"]}
    assert codes == {2: SKIP_NO_REFERENCE, 3: SKIP_NO_PREDICTION, 4: SKIP_RESULT_MISMATCH, 5: SKIP_RESULT_MISMATCH,
                     6: SKIP_RESULT_MISMATCH}
    assert set(codes.values()) <= set(SKIP_CODES)
    assert [sorted(s) for s in r["skipped"]] == [["code", "id", "reason"]] * 5


def test_reference_side_mismatch_is_named():
    r = evaluate([task(1, [ch("A")], v1=[ch("A")]),
                  task(2, [{"from_name": "ner", "value": {"start": 0}}], v1=[ch("A")])],
                 CONFIG, "v1")
    assert r["skipped"][0]["reason"].startswith("result does not match the label config: reference")


def test_relations_and_unscored_controls_are_ignored():
    rel = {"type": "relation", "from_id": "a", "to_id": "b", "direction": "right"}
    r = evaluate([task(1, [ch("Positive"), rel], v1=[ch("Positive")])], CONFIG, "v1")
    assert r["n_compared"] == 1 and r["unscored_controls"] == []
    cfg2 = CONFIG.replace("<Relations>", '<Image name="img" value="$img"/><Brush name="mask" toName="img"/><Relations>')
    brush = {"from_name": "mask", "to_name": "img", "type": "brush", "value": {"format": "rle", "rle": [1]}}
    r = evaluate([task(1, [ch("Positive"), brush], v1=[ch("Positive")])], cfg2, "v1")
    assert r["score"] == 1.0 and r["unscored_controls"] == ["mask"]


def test_model_against_model_needs_no_annotation():
    tasks = [task(1, None, v_a=[ch("Positive")], v_b=[ch("Negative")]),
             task(2, None, v_a=[ch("Neutral")], v_b=[ch("Neutral")]),
             task(3, None, v_a=[ch("Neutral")])]
    r = evaluate(tasks, CONFIG, "v-a", against="v-b")
    assert r["reference"] == "v-b" and r["n_compared"] == 2 and r["per_control"]["sentiment"]["score"] == 0.5
    assert r["score"] == pytest.approx((5 / 6 + 1) / 2)
    assert r["skipped"] == [{"id": 3, "code": "no_reference", "reason": "no prediction of version 'v-b'"}]


def test_newest_prediction_of_a_version_is_used():
    t = task(1, [ch("Positive")])
    t["predictions"] = [
        {"id": 5, "model_version": "v1", "created_at": "2026-01-02T00:00:00Z", "result": [ch("Positive")]},
        {"id": 3, "model_version": "v1", "created_at": "2026-01-01T00:00:00Z", "result": [ch("Negative")]},
        {"id": 4, "model_version": "v2", "created_at": "2026-03-01T00:00:00Z", "result": [ch("Negative")]},
    ]
    assert prediction_of(t, "v1")["id"] == 5
    assert evaluate([t], CONFIG, "v1")["score"] == 1.0


def test_ground_truth_is_the_flagged_not_cancelled_annotation():
    t = {"annotations": [{"id": 1, "result": []}, {"id": 2, "ground_truth": True, "was_cancelled": True, "result": []}]}
    assert ground_truth(t) is None
    t["annotations"].append({"id": 3, "ground_truth": True, "result": []})
    assert ground_truth(t)["id"] == 3


def test_report_is_plain_json():
    tasks = [task(1, [ch("Positive"), sp("PER", 0, 5), ta("a")], v1=[ch("Negative"), sp("PER", 0, 5), ta("b")]),
             task(2, [ch("Negative")], v1=[ch("Negative")])]
    r = evaluate(tasks, CONFIG, "v1")
    json.dumps(r, allow_nan=False)

    def walk(x):
        assert type(x) in (dict, list, str, int, float, bool, type(None)), type(x)
        if isinstance(x, dict):
            for k, v in x.items():
                assert type(k) is str
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(r)
    for key in ("version", "reference", "n_tasks", "n_skipped", "score", "per_control", "per_label", "confusion",
                "kappa", "alpha", "tasks", "skipped"):
        assert key in r


# ---------------------------------------------------------------- errors

def test_unknown_version_is_an_error():
    with pytest.raises(ScoringError, match=r"version 'v9' has no predictions.*versions found: v1"):
        evaluate([task(1, [ch("Positive")], v1=[])], CONFIG, "v9")


def test_no_ground_truth_anywhere_is_an_error():
    with pytest.raises(NoReferenceError, match="no task has a ground-truth annotation"):
        evaluate([task(1, None, v1=[ch("Positive")])], CONFIG, "v1")


def test_unknown_reference_version_is_an_error():
    with pytest.raises(NoReferenceError, match="reference version 'v7'"):
        evaluate([task(1, None, v1=[ch("Positive")])], CONFIG, "v1", against="v7")
    with pytest.raises(ScoringError, match="itself"):
        evaluate([task(1, None, v1=[ch("Positive")])], CONFIG, "v1", against="v1")


def test_nothing_scorable_is_an_error_with_reasons():
    tasks = [task(i, [ch("Positive")], v1=[{"from_name": "mood", "value": {}}]) for i in range(5)]
    with pytest.raises(ScoringError, match=r"no task could be scored: task 0: result does not match.*\(and 2 more\)"):
        evaluate(tasks, CONFIG, "v1")
    with pytest.raises(ScoringError, match="no tasks"):
        evaluate([], CONFIG, "v1")


def test_label_config_errors():
    with pytest.raises(LabelConfigError, match="cannot be parsed"):
        compile_schema("<View><Choices")
    with pytest.raises(LabelConfigError, match="no control that can be scored"):
        compile_schema('<View><Image name="i" value="$i"/><Brush name="b" toName="i"/></View>')


def test_scoring_config_must_fit_the_label_config():
    with pytest.raises(ScoringConfigError, match="control 'mood' is not in the label config"):
        compile_schema(CONFIG, ScoringConfig(controls={"mood": ControlConfig(metric="exact")}))
    with pytest.raises(ScoringConfigError, match="metric 'levenshtein' is not one of exact, jaccard"):
        compile_schema(CONFIG, ScoringConfig(controls={"sentiment": ControlConfig(metric="levenshtein")}))
    zero = {n: ControlConfig(weight=0.0) for n in ("sentiment", "topics", "ner", "summary", "quality", "stars")}
    with pytest.raises(ScoringConfigError, match="all control weights are 0"):
        compile_schema(CONFIG, ScoringConfig(controls=zero))


# ---------------------------------------------------------------- custom metrics

CALLS = []


def half(annotation_1, annotation_2, per_label=False):
    """A custom metric with Label Studio's signature, for the tests."""
    CALLS.append((annotation_1, annotation_2, per_label))
    return 0.5


def broken(annotation_1, annotation_2, per_label=False):
    raise RuntimeError("boom")


def too_big(annotation_1, annotation_2, per_label=False):
    return 2


def wrong_signature(a):
    return 1.0


def write_yaml(tmp_path, text):
    p = tmp_path / "scoring.yaml"
    p.write_text(text)
    return str(p)


def test_custom_metric_from_scoring_yaml(tmp_path):
    cfg = load_scoring_config(write_yaml(tmp_path, "controls:\n  summary:\n"
                                                   "    metric: tests.test_engine:half\n    weight: 2\n"))
    CALLS.clear()
    gt = [ch("Positive"), ta("x"), ra(5)]
    pred = [ch("Positive"), ta("y"), ra(5)]
    r = evaluate([task(1, gt, v1=pred), task(2, [ch("Positive")], v1=[ch("Positive")])], CONFIG, "v1", config=cfg)
    assert r["per_control"]["summary"]["metric"] == "tests.test_engine:half"
    assert only(r, 1)["per_control"]["summary"] == 0.5
    assert only(r, 2)["per_control"]["summary"] == 1.0           # both sides empty: not called
    assert only(r, 1)["score"] == pytest.approx((5 + 2 * 0.5) / 7)
    assert len(CALLS) == 1
    a1, a2, per_label = CALLS[0]
    assert a1 == {"result": [ta("y")]} and a2 == {"result": [ta("x")]} and per_label is False


@pytest.mark.parametrize("func,reason", [("broken", "failed on 'summary': RuntimeError: boom"),
                                         ("too_big", "outside [0, 1]")])
def test_failing_custom_metric_skips_the_task(tmp_path, func, reason):
    cfg = load_scoring_config(write_yaml(tmp_path, f"controls:\n  summary: tests.test_engine:{func}\n"))
    tasks = [task(1, [ta("x")], v1=[ta("y")]), task(2, [ch("Positive")], v1=[ch("Positive")])]
    r = evaluate(tasks, CONFIG, "v1", config=cfg)
    assert r["n_compared"] == 1 and reason in r["skipped"][0]["reason"]
    assert r["skipped"][0]["code"] == SKIP_CUSTOM_METRIC


# ---------------------------------------------------------------- scoring.yaml

def test_load_scoring_config(tmp_path):
    assert load_scoring_config(None) == ScoringConfig()
    cfg = load_scoring_config(write_yaml(tmp_path, "controls:\n  sentiment: {metric: jaccard, weight: 2}\n"
                                                   "  summary: token_set\n"))
    assert cfg.for_control("sentiment") == ControlConfig(metric="jaccard", weight=2.0)
    assert cfg.for_control("summary").metric == "token_set"
    assert cfg.for_control("ner") == ControlConfig()
    assert load_scoring_config(write_yaml(tmp_path, "")).controls == {}


@pytest.mark.parametrize("text,message", [
    ("controls: [a, b]\n", "'controls' must map"),
    ("controls:\n  a: {metric: exact, wieght: 2}\n", "unknown key(s) wieght"),
    ("metrics: {}\n", "unknown key(s) metrics"),
    ("controls:\n  a: {weight: -1}\n", "weight must be a number >= 0"),
    ("controls:\n  a: {weight: heavy}\n", "weight must be a number >= 0"),
    ("controls:\n  a: {metric: 3}\n", "metric must be a name"),
    ("controls:\n  a: no_such_module_xyz:f\n", "cannot import custom metric module 'no_such_module_xyz'"),
    ("controls:\n  a: tests.test_engine:nope\n", "has no function 'nope'"),
    ("controls:\n  a: tests.test_engine:wrong_signature\n",
     "must accept (annotation_1, annotation_2, per_label=False)"),
    ("controls:\n  a: [unclosed\n", "is not valid YAML at line"),
    ("- 1\n", "expected a mapping"),
])
def test_bad_scoring_config(tmp_path, text, message):
    with pytest.raises(ScoringConfigError) as err:
        load_scoring_config(write_yaml(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_scoring_config(tmp_path):
    with pytest.raises(ScoringConfigError, match="cannot read scoring config"):
        load_scoring_config(str(tmp_path / "nope.yaml"))


# ---------------------------------------------------------------- export loading

@pytest.mark.parametrize("content,message", [
    (b"{not json", "is not JSON (line 1"),
    (b"\xff\xfe", "is not JSON"),
    (b'{"tasks": []}', "expected a list of tasks, found a JSON dict"),
    (b"[]", "contains no tasks"),
    (b'[{"sentiment": "Positive"}]', "item 0 has no 'data' object"),
    (b'[{"id": 1, "data": {}, "predictions": [17]}]', "predictions as ids only"),
    (b'[{"id": 1, "data": {}, "annotations": {}}]', "'annotations' that is not a list"),
])
def test_bad_exports(tmp_path, content, message):
    p = tmp_path / "export.json"
    p.write_bytes(content)
    with pytest.raises(ExportError) as err:
        load_export(str(p))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_export(tmp_path):
    with pytest.raises(ExportError, match="cannot read export file"):
        load_export(str(tmp_path / "missing.json"))


# ---------------------------------------------------------------- pairs and several sources

def test_score_pair():
    schema = compile_schema(CONFIG)
    score, per = score_pair([ch("Positive"), ra(4)], [ch("Positive"), ra(5)], schema)
    assert per["quality"] == 0.75 and score == pytest.approx(5.75 / 6)
    with pytest.raises(ResultMismatch):
        score_pair([{"from_name": "mood", "value": {}}], [], schema)


def test_alpha_multi_matches_krippendorff():
    rows = {"v-a": ["Positive", "Negative", None, "Neutral", "Positive"],
            "v-b": ["Positive", "Positive", "Neutral", "Neutral", None],
            "ground_truth": ["Positive", "Negative", "Neutral", "Neutral", "Positive"]}
    tasks = []
    for i in range(5):
        t = {"id": i, "data": {},
             "annotations": [{"id": i, "ground_truth": True, "result": [ch(rows["ground_truth"][i])]}],
             "predictions": []}
        for v in ("v-a", "v-b"):
            if rows[v][i] is not None:
                t["predictions"].append({"id": i, "model_version": v, "result": [ch(rows[v][i])]})
        tasks.append(t)
    sources = ["v-a", "v-b", "ground_truth"]
    schema = compile_schema(CONFIG)
    assert single_choice_values(tasks, schema, "v-a", "sentiment") == rows["v-a"]
    codes = {"Positive": 0, "Negative": 1, "Neutral": 2}
    data = np.array([[np.nan if x is None else codes[x] for x in rows[s]] for s in sources], dtype=float)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=[0, 1, 2])
    assert alpha_multi(tasks, CONFIG, sources, "sentiment") == pytest.approx(expected)
    with pytest.raises(ScoringError, match="not a single-choice"):
        alpha_multi(tasks, CONFIG, sources, "topics")


# ---------------------------------------------------------------- property: whole tasks

region = st.one_of(
    st.sampled_from(["Positive", "Negative", "Neutral"]).map(ch),
    st.lists(st.sampled_from("ABC"), max_size=3).map(lambda v: ch(v, "topics")),
    st.tuples(st.sampled_from(["PER", "ORG", "LOC"]), st.integers(0, 30), st.integers(0, 10))
    .map(lambda t: sp(t[0], t[1], t[1] + t[2])),
    st.text(alphabet="ab .", max_size=8).map(ta),
    st.integers(1, 5).map(ra),
    st.floats(-5, 15, allow_nan=False).map(num),
)
results = st.lists(region, max_size=6)


@settings(max_examples=80, deadline=None)
@given(a=results, b=results)
def test_task_scores_are_in_unit_interval_and_identical_results_score_one(a, b):
    schema = compile_schema(CONFIG)
    s, per = score_pair(a, b, schema)
    assert 0.0 <= s <= 1.0 and all(0.0 <= v <= 1.0 for v in per.values())
    assert score_pair(a, a, schema)[0] == pytest.approx(1.0)
    assert score_pair(b, a, schema)[0] == pytest.approx(s)


def test_example_scoring_yaml_fits_the_example_label_config():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    cfg = load_scoring_config(str(root / "scoring.example.yaml"))
    assert cfg.for_control("sentiment") == ControlConfig(metric="exact", weight=2.0)
    assert cfg.for_control("summary").metric == "token_set"
    schema = compile_schema(CONFIG, cfg)
    assert schema.by_name["quality"].weight == 0.5


def test_pair_results_and_prediction_ids_for_write_back():
    from scoring.engine import pair_results
    t = task(1, [ch("Positive")], v1=[ch("Positive")], v2=[ch("Negative")])
    pred, ref = pair_results(t, "v1")
    assert pred["id"] == 11 and ref["id"] == 10
    pred, ref = pair_results(t, "v1", "v2")
    assert ref["model_version"] == "v2"
    assert pair_results(t, "v9") == (None, t["annotations"][0])
    r = evaluate([t], CONFIG, "v1")
    assert r["tasks"][0]["prediction_id"] == 11 and r["tasks"][0]["score"] == 1.0


# ---------------------------------------------------------------- intervals (issue 10)

def interval_tasks(n=40):
    """n tasks: sentiment right 3 times in 4, one PER span shifted every 5th task, a summary off by a word."""
    out = []
    for i in range(n):
        pred = "Positive" if i % 4 else "Negative"
        shift = 3 if i % 5 == 0 else 0
        out.append(task(i, [ch("Positive"), sp("PER", 0, 6), ta("kim moved to seoul")],
                        v1=[ch(pred), sp("PER", shift, 6 + shift), ta("kim moved to seoul" if i % 3 else "kim moved")]))
    return out


def test_every_estimate_gets_an_interval_beside_it():
    r = evaluate(interval_tasks(), CONFIG, "v1")
    assert r["ci_level"] == 0.95 and r["ci_seed"] == 0 and r["ci_method"] == "bca"
    lo, hi = r["score_ci"]
    assert lo < r["score"] < hi
    for pc in r["per_control"].values():
        assert set(pc) == {"metric", "score", "n", "weight", "ci"}
        if pc["ci"] is not None:
            assert pc["ci"][0] <= pc["score"] <= pc["ci"][1]
    # Wilson, 30 of 40 (statsmodels)
    assert r["per_control"]["sentiment"]["ci"] == pytest.approx([0.59806, 0.85813], abs=1e-5)
    # no side rated anywhere: 1.0 on all 40 tasks, still an interval (Wilson is defined at 40 of 40)
    assert r["per_control"]["quality"]["ci"] == pytest.approx([0.91238, 1.0], abs=1e-5)
    per = r["per_label"]["ner"]["PER"]
    assert set(per) == {"precision", "recall", "f1", "support", "precision_ci", "recall_ci", "f1_ci"}
    assert per["f1_ci"][0] < per["f1"] < per["f1_ci"][1]
    assert r["per_label"]["sentiment"]["Neutral"]["precision_ci"] is None   # never predicted nor present
    assert set(r["kappa_ci"]) == set(r["kappa"]) == {"sentiment"} and set(r["alpha_ci"]) == {"sentiment"}
    assert r["kappa"]["sentiment"] == 0.0 and r["kappa_ci"]["sentiment"] is None   # reference never varies
    json.dumps(r)


def test_intervals_are_seeded_and_follow_the_level():
    tasks = interval_tasks()
    a, b = evaluate(tasks, CONFIG, "v1"), evaluate(tasks, CONFIG, "v1")
    assert a["score_ci"] == b["score_ci"] and a["per_label"] == b["per_label"]
    narrow = evaluate(tasks, CONFIG, "v1", intervals=IntervalOptions(level=0.8))
    assert narrow["ci_level"] == 0.8
    assert narrow["score_ci"][1] - narrow["score_ci"][0] < a["score_ci"][1] - a["score_ci"][0]


def test_one_task_gives_null_intervals_never_invented_ones():
    r = evaluate([task(1, [ch("Positive"), sp("PER", 0, 5)], v1=[ch("Negative"), sp("PER", 0, 5)])], CONFIG, "v1")
    assert r["score_ci"] is None
    assert all(pc["ci"] is None for pc in r["per_control"].values())
    assert all(v[k] is None for labels in r["per_label"].values() for v in labels.values()
               for k in ("precision_ci", "recall_ci", "f1_ci"))
    assert r["kappa_ci"] == {"sentiment": None} and r["alpha_ci"] == {"sentiment": None}


def test_intervals_can_be_left_out():
    r = evaluate(interval_tasks(5), CONFIG, "v1", intervals=None)
    assert not {"score_ci", "kappa_ci", "alpha_ci", "ci_level"} & set(r)
    assert "ci" not in r["per_control"]["sentiment"] and "f1_ci" not in r["per_label"]["ner"]["PER"]
