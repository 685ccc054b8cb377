"""Hand-worked examples for every default and alternative metric of issue 4."""
import pytest

from scoring.metrics import REGISTRY, boxes, choices, numeric, spans, taxonomy, textarea
from scoring.metrics.spec import ControlSpec, ResultMismatch, TagMetrics

F = frozenset


def test_defaults_name_registered_metrics():
    for record in REGISTRY.values():
        assert record.default in record.metrics


def test_a_record_refuses_an_unknown_default_or_shortcut():
    with pytest.raises(ValueError, match="default metric 'nope'"):
        TagMetrics(default="nope", metrics={"exact": choices.exact}, extract=choices.extract)
    with pytest.raises(ValueError, match="from_stats"):
        TagMetrics(default="exact", metrics={"exact": choices.exact}, extract=choices.extract,
                   from_stats={"jaccard": lambda st: 1.0}, label_stats=choices.label_stats)


# ---------------------------------------------------------------- Choices / Taxonomy

def test_choices_exact_single_and_multiple():
    assert choices.exact(F({"Positive"}), F({"Positive"})) == 1.0
    assert choices.exact(F({"Positive"}), F({"Negative"})) == 0.0
    # multiple choice: the whole selected set must match
    assert choices.exact(F({"A", "B"}), F({"B", "A"})) == 1.0
    assert choices.exact(F({"A", "B"}), F({"A"})) == 0.0


def test_choices_jaccard():
    # {A,B,C} vs {B,C,D}: 2 shared of 4
    assert choices.jaccard(F("ABC"), F("BCD")) == 0.5
    assert choices.jaccard(F("A"), F("B")) == 0.0
    assert choices.jaccard(F(), F()) == 1.0


def test_choices_extract_merges_regions_and_rejects_bad_values():
    regions = [{"value": {"choices": ["A"]}}, {"value": {"choices": ["B", "A"]}}]
    assert choices.extract(regions, ControlSpec("c", "Choices")) == F({"A", "B"})
    with pytest.raises(ResultMismatch, match="'c'"):
        choices.extract([{"value": {"labels": ["A"]}}], ControlSpec("c", "Choices"))
    with pytest.raises(ResultMismatch):
        choices.extract([{"value": {"choices": [1]}}], ControlSpec("c", "Choices"))


def test_choices_label_stats_and_from_stats_agree_with_metric():
    a, b = F({"A", "B"}), F({"B", "C"})
    st = choices.label_stats(a, b)
    assert st == {"A": (0, 1, 0), "B": (1, 0, 0), "C": (0, 0, 1)}
    assert choices.METRICS.from_stats["exact"](st) == choices.exact(a, b) == 0.0
    assert choices.METRICS.from_stats["jaccard"](st) == choices.jaccard(a, b) == pytest.approx(1 / 3)


def test_taxonomy_paths_compared_as_sets():
    spec = ControlSpec("t", "Taxonomy")
    a = taxonomy.extract([{"value": {"taxonomy": [["Animal", "Cat"], ["Plant"]]}}], spec)
    b = taxonomy.extract([{"value": {"taxonomy": [["Plant"]]}}, {"value": {"taxonomy": [["Animal", "Cat"]]}}], spec)
    c = taxonomy.extract([{"value": {"taxonomy": [["Animal"], ["Plant"]]}}], spec)
    assert a == b == F({("Animal", "Cat"), ("Plant",)})
    assert REGISTRY["Taxonomy"].metrics["exact"](a, b) == 1.0
    assert REGISTRY["Taxonomy"].metrics["exact"](a, c) == 0.0          # ("Animal",) is not ("Animal", "Cat")
    assert REGISTRY["Taxonomy"].metrics["jaccard"](a, c) == pytest.approx(1 / 3)   # Plant shared of 3 paths
    with pytest.raises(ResultMismatch):
        taxonomy.extract([{"value": {"taxonomy": ["Animal"]}}], spec)


# ---------------------------------------------------------------- spans

def test_span_f1_iou_threshold_includes_half():
    # "Hank" [0,4) vs "Hank Pym" [0,8): IoU 4/8 = 0.5 -> a match
    assert spans.span_f1((("PER", 0, 4),), (("PER", 0, 8),)) == 1.0
    # "Ivy" [0,3) vs "Ivy Chen" [0,8): IoU 3/8 < 0.5 -> no match
    assert spans.span_f1((("PER", 0, 3),), (("PER", 0, 8),)) == 0.0


def test_span_f1_needs_same_label():
    assert spans.span_f1((("PER", 0, 8),), (("ORG", 0, 8),)) == 0.0


def test_span_f1_counts_a_multi_label_span_once_per_label():
    spec = ControlSpec("ner", "Labels")
    a = spans.extract([{"value": {"start": 0, "end": 5, "labels": ["PER", "ORG"]}}], spec)
    b = spans.extract([{"value": {"start": 0, "end": 5, "labels": ["PER"]}}], spec)
    assert spans.span_f1(a, b) == pytest.approx(2 * 1 / (2 + 1))


def test_span_f1_maximum_matching_beats_greedy():
    # pred p0=[0,10) is eligible with r0=[0,10) (IoU 1) and r1=[0,6) (0.6); p1=[3,10) only with r0 (0.7).
    # Greedy on best IoU pairs p0-r0 and leaves p1 unmatched (F1 0.5); the maximum matching has 2 pairs.
    a = (("PER", 0, 10), ("PER", 3, 10))
    b = (("PER", 0, 10), ("PER", 0, 6))
    assert spans.span_f1(a, b) == 1.0
    assert spans.label_stats(a, b) == {"PER": (2, 0, 0)}


def test_span_f1_worked_example_from_fixture_t07():
    # v-good misses one PER of three: 2 * 2 / (2 + 3)
    ref = (("PER", 0, 5), ("ORG", 10, 20), ("PER", 30, 38))
    pred = (("PER", 0, 5), ("ORG", 10, 20))
    assert spans.span_f1(pred, ref) == pytest.approx(0.8)
    assert spans.label_stats(pred, ref) == {"PER": (1, 0, 1), "ORG": (1, 0, 0)}


def test_char_overlap_pools_labels():
    # PER: [0,10) vs [5,15) -> 5 shared of 15; ORG: [20,24) vs [20,22) -> 2 of 4 => 7 / 19
    a = (("PER", 0, 10), ("ORG", 20, 24))
    b = (("PER", 5, 15), ("ORG", 20, 22))
    assert spans.char_overlap(a, b) == pytest.approx(7 / 19)


def test_char_overlap_merges_overlapping_spans_of_a_label():
    # a labels [0,6) and [4,10) -> characters 0..9; b labels [0,10): identical character sets
    assert spans.char_overlap((("PER", 0, 6), ("PER", 4, 10)), (("PER", 0, 10),)) == 1.0
    # different labels over the same characters do not overlap
    assert spans.char_overlap((("PER", 0, 10),), (("ORG", 0, 10),)) == 0.0


def test_span_extract_rejects_bad_offsets():
    spec = ControlSpec("ner", "Labels")
    with pytest.raises(ResultMismatch, match="start <= end"):
        spans.extract([{"value": {"start": 5, "end": 2, "labels": ["PER"]}}], spec)
    with pytest.raises(ResultMismatch):
        spans.extract([{"value": {"start": "0", "end": 2, "labels": ["PER"]}}], spec)
    with pytest.raises(ResultMismatch):
        spans.extract([{"value": {"startOffset": 0, "endOffset": 2, "labels": ["PER"]}}], spec)


# ---------------------------------------------------------------- boxes

def box(label, x, y, w, h, rot=0, ow=None, oh=None):
    return (label, x, y, w, h, rot, ow, oh)


def test_box_iou_axis_aligned():
    # [0,10]x[0,10] vs [5,15]x[0,10]: 50 / 150
    assert boxes.box_iou(box("A", 0, 0, 10, 10), box("A", 5, 0, 10, 10)) == pytest.approx(1 / 3)
    # [0,10]x[0,10] vs [0,10]x[0,5]: 50 / 100 (exactly the threshold)
    assert boxes.box_iou(box("A", 0, 0, 10, 10), box("A", 0, 0, 10, 5)) == 0.5


def test_box_iou_rotated_uses_pixels():
    ow, oh = 200, 100   # 1% = 2 px horizontally, 1 px vertically
    # top-left (100, 50) px, 10 px wide, 20 px high; 90 degrees about the top-left corner
    # gives x in [80, 100], y in [50, 60] px = x 40%, y 50%, width 10%, height 10%
    rotated = box("A", 50, 50, 5, 20, 90, ow, oh)
    same_place = box("A", 40, 50, 10, 10, 0, ow, oh)
    assert boxes.box_iou(rotated, same_place) == pytest.approx(1.0)
    # without the image size the rotation happens in percent units: [30, 50] x [50, 55]
    assert boxes.box_iou(box("A", 50, 50, 5, 20, 90), box("A", 30, 50, 20, 5)) == pytest.approx(1.0)


def test_box_f1_and_mean_iou():
    car = box("Car", 0, 0, 10, 10)
    near = box("Car", 0, 0, 10, 8)          # IoU 0.8 with car
    far = box("Car", 50, 50, 10, 10)        # IoU 0 with everything
    person = box("Person", 0, 0, 10, 10)    # same place, other label
    assert boxes.box_f1((car, far), (near,)) == pytest.approx(2 * 1 / 3)
    assert boxes.box_f1((person,), (car,)) == 0.0
    assert boxes.mean_iou((car, far), (near,)) == pytest.approx(0.8)   # unmatched boxes do not count
    assert boxes.mean_iou((far,), (car,)) == 0.0
    assert boxes.label_stats((car, far), (near,)) == {"Car": (1, 1, 0)}


def test_mean_iou_prefers_the_better_of_equally_large_matchings():
    ref = (box("Car", 0, 0, 10, 10),)
    pred = (box("Car", 0, 0, 10, 6), box("Car", 0, 0, 10, 9))   # IoU 0.6 and 0.9, one can match
    assert boxes.mean_iou(pred, ref) == pytest.approx(0.9)
    assert boxes.mean_iou(ref, pred) == pytest.approx(0.9)


def test_box_extract():
    spec = ControlSpec("box", "RectangleLabels")
    value = {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0, "rectanglelabels": ["Car"]}
    got = boxes.extract([{"original_width": 640, "original_height": 480, "value": value}], spec)
    assert got == (("Car", 1, 2, 3, 4, 0, 640, 480),)
    with pytest.raises(ResultMismatch):
        boxes.extract([{"value": {"x": 1, "y": 2, "width": -3, "height": 4, "rectanglelabels": ["Car"]}}], spec)


# ---------------------------------------------------------------- textarea

def test_levenshtein_joins_texts_with_newline():
    # "Great service!" vs "Great service.": one substitution over 14 characters
    assert textarea.levenshtein(("Great service!",), ("Great service.",)) == pytest.approx(13 / 14)
    # ("ab", "cd") -> "ab\ncd" vs "ab\ncd"
    assert textarea.levenshtein(("ab", "cd"), ("ab\ncd",)) == 1.0
    assert textarea.levenshtein(("abc",), ("",)) == 0.0


def test_by_index_pairs_texts_by_position():
    # pair 1: "abcd"/"abcf" -> 0.75; pair 2: "xy"/"xy" -> 1; third text unpaired -> 0 => 1.75 / 3
    assert textarea.by_index(("abcd", "xy", "extra"), ("abcf", "xy")) == pytest.approx(1.75 / 3)
    assert textarea.by_index(("a", "b"), ("b", "a")) == 0.0      # order matters


def test_token_set_is_jaccard_of_lowercased_words():
    # {kim, moved, to, seoul} vs {kim, moved, to, busan}: 3 of 5
    assert textarea.token_set(("Kim moved to Seoul.",), ("kim MOVED to Busan",)) == pytest.approx(3 / 5)
    assert textarea.token_set(("b a",), ("a b a",)) == 1.0   # a set: order and repeats ignored
    assert textarea.token_set(("...",), ("!",)) == 1.0        # no words on either side


def test_textarea_extract_accepts_a_plain_string():
    spec = ControlSpec("s", "TextArea")
    regions = [{"value": {"text": "one"}}, {"value": {"text": ["two", "three"]}}]
    assert textarea.extract(regions, spec) == ("one", "two", "three")
    with pytest.raises(ResultMismatch):
        textarea.extract([{"value": {"text": [1]}}], spec)


# ---------------------------------------------------------------- rating / number

def test_rating_linear_uses_max_rating_minus_one():
    spec = ControlSpec("quality", "Rating", range=4.0)   # maxRating 5
    assert numeric.linear(4, 5, spec) == 0.75
    assert numeric.linear(1, 3, spec) == 0.5
    assert numeric.linear(1, 5, spec) == 0.0
    assert numeric.exact(4, 5, spec) == 0.0 and numeric.exact(5, 5, spec) == 1.0


def test_number_linear_with_and_without_range():
    with_range = ControlSpec("n", "Number", range=10.0)
    assert numeric.linear(2.5, 5.0, with_range) == 0.75
    assert numeric.linear(-20, 20, with_range) == 0.0   # clipped at 0 outside the range
    no_range = ControlSpec("n", "Number")
    assert numeric.linear(2.5, 5.0, no_range) == 0.0
    assert numeric.linear(2.5, 2.5, no_range) == 1.0


def test_numeric_extract_takes_the_first_region():
    spec = ControlSpec("quality", "Rating", range=4.0)
    assert numeric.extract([{"value": {"rating": 2}}, {"value": {"rating": 5}}], spec) == 2
    assert numeric.extract([{"value": {"number": 1.5}}], ControlSpec("n", "Number")) == 1.5
    with pytest.raises(ResultMismatch, match="not a number"):
        numeric.extract([{"value": {"rating": "5"}}], spec)
    with pytest.raises(ResultMismatch):
        numeric.extract([{"value": {"rating": True}}], spec)
