"""Property tests (hypothesis) and the registry contract: every metric of every tag
maps two valid sides to [0, 1], gives 1 on identical inputs and is symmetric
(all built-in metrics are symmetric by definition)."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.metrics import REGISTRY
from scoring.metrics.spec import ControlSpec

LABELS = ["A", "B", "C"]
SPECS = {
    "Choices": ControlSpec("c", "Choices", labels=tuple(LABELS), multiple=True),
    "Taxonomy": ControlSpec("t", "Taxonomy", labels=tuple(LABELS)),
    "Labels": ControlSpec("ner", "Labels", labels=tuple(LABELS)),
    "RectangleLabels": ControlSpec("box", "RectangleLabels", labels=tuple(LABELS)),
    "TextArea": ControlSpec("s", "TextArea"),
    "Rating": ControlSpec("q", "Rating", range=4.0),
    "Number": ControlSpec("n", "Number", range=10.0),
}
label = st.sampled_from(LABELS)
small = st.integers(min_value=0, max_value=60)
pct = st.floats(min_value=0, max_value=100, allow_nan=False)


@st.composite
def span_region(draw):
    if draw(st.booleans()):   # character offsets
        s, length = draw(small), draw(st.integers(0, 20))
    else:                     # e.g. seconds of audio
        s, length = draw(st.floats(0, 60)), draw(st.floats(0, 20))
    return {"value": {"start": s, "end": s + length, "labels": draw(st.lists(label, min_size=1, max_size=2))}}


@st.composite
def box_region(draw):
    return {"original_width": 640, "original_height": 480,
            "value": {"x": draw(pct), "y": draw(pct),
                      "width": draw(st.floats(0, 50)), "height": draw(st.floats(0, 50)),
                      "rotation": draw(st.sampled_from([0, 0, 30, 90])),
                      "rectanglelabels": draw(st.lists(label, min_size=1, max_size=2))}}


REGION = {
    "Choices": st.builds(lambda cs: {"value": {"choices": cs}}, st.lists(label, max_size=3)),
    "Taxonomy": st.builds(lambda ps: {"value": {"taxonomy": ps}},
                          st.lists(st.lists(label, min_size=1, max_size=3), max_size=3)),
    "Labels": span_region(),
    "RectangleLabels": box_region(),
    "TextArea": st.builds(lambda ts: {"value": {"text": ts}},
                          st.lists(st.text(alphabet="ab c.\n", max_size=12), max_size=3)),
    "Rating": st.builds(lambda r: {"value": {"rating": r}}, st.integers(1, 5)),
    "Number": st.builds(lambda x: {"value": {"number": x}}, st.floats(-5, 15, allow_nan=False)),
}


def side(tag):
    """A non-empty side: the extracted value of 1-4 regions."""
    return st.lists(REGION[tag], min_size=1, max_size=4).map(lambda regs: REGISTRY[tag].extract(regs, SPECS[tag]))


METRICS = [(tag, name) for tag, record in REGISTRY.items() for name in record.metrics]
LABEL_STATS_TAGS = sorted(tag for tag, record in REGISTRY.items() if record.label_stats is not None)


def test_contract_covers_the_whole_registry():
    assert set(REGISTRY) == set(REGION) == set(SPECS)
    assert len(METRICS) == sum(len(r.metrics) for r in REGISTRY.values()) >= 14
    for record in REGISTRY.values():
        assert callable(record.metrics[record.default]) and callable(record.extract)
        assert set(record.from_stats) <= set(record.metrics)


@pytest.mark.parametrize("tag,name", METRICS, ids=[f"{t}.{n}" for t, n in METRICS])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_metric_contract(tag, name, data):
    fn = REGISTRY[tag].metrics[name]
    spec = SPECS[tag]
    a = data.draw(side(tag), label="a")
    b = data.draw(side(tag), label="b")
    s_ab = fn(a, b, spec)
    assert type(s_ab) is float
    assert 0.0 <= s_ab <= 1.0
    assert s_ab == pytest.approx(fn(b, a, spec), abs=1e-9)   # symmetric
    assert fn(a, a, spec) == pytest.approx(1.0, abs=1e-9)    # identical -> 1
    record = REGISTRY[tag]
    from_stats = record.from_stats.get(name)
    if from_stats is not None:   # the engine's shortcut gives the same number
        assert record.label_stats is not None
        assert from_stats(record.label_stats(a, b)) == pytest.approx(s_ab)


@pytest.mark.parametrize("tag", LABEL_STATS_TAGS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_label_stats_account_for_every_item(tag, data):
    record = REGISTRY[tag]
    a = data.draw(side(tag) | st.just(record.empty))
    b = data.draw(side(tag) | st.just(record.empty))
    stats = record.label_stats(a, b)
    assert sum(tp + fp for tp, fp, fn in stats.values()) == len(a)   # every predicted item is a TP or FP
    assert sum(tp + fn for tp, fp, fn in stats.values()) == len(b)   # every reference item is a TP or FN
    flipped = record.label_stats(b, a)
    assert {k: (tp, fn, fp) for k, (tp, fp, fn) in stats.items()} == flipped


SET_TAGS = ("Choices", "Taxonomy", "Labels", "RectangleLabels", "TextArea")


@pytest.mark.parametrize("tag,name", [m for m in METRICS if m[0] in SET_TAGS])
def test_two_empty_values_score_one(tag, name):
    record = REGISTRY[tag]
    assert record.metrics[name](record.empty, record.empty, SPECS[tag]) == 1.0
