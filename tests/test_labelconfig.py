"""core.labelconfig: the one reading of a label config, and the backend and scoring side agreeing on it."""
import time

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.controls import number as number_handler
from backend.controls import rating as rating_handler
from backend.schema import build_plan, plan_for
from core import labelconfig
from core.errors import LabelConfigError
from scoring.engine import compile_schema, evaluate

TEXT = '<Text name="t" value="$text"/>'


def cfg(*controls: str, objects: str = TEXT) -> str:
    return f"<View>{objects}{''.join(controls)}</View>"


def choices(attrs: str = "", name: str = "c", options=("A", "B")) -> str:
    inner = "".join(f'<Choice value="{o}"/>' for o in options)
    return f'<Choices name="{name}" toName="t" {attrs}>{inner}</Choices>'


def control(config: str, name: str):
    return labelconfig.parse(config).control(name)


# ---------------------------------------------------------------- one test per attribute

@pytest.mark.parametrize("value, expected", [
    ("multiple", True), ("Multiple", True), ("MULTIPLE", True), (" multiple ", True),
    ("single", False), ("single-radio", False), ("", False), (None, False),
])
def test_multiple_is_case_insensitive(value, expected):
    attrs = "" if value is None else f'choice="{value}"'
    assert control(cfg(choices(attrs)), "c").multiple is expected
    labels = f'<Labels name="l" toName="t" {attrs}><Label value="X"/></Labels>'
    assert control(cfg(labels), "l").multiple is expected


@pytest.mark.parametrize("value, expected", [
    ("10", 10), ("5.0", 5), ("3", 3), ("1", 1), ("7.9", 7),
    (None, 5), ("", 5), ("ten", 5), ("0", 5), ("-2", 5), ("nan", 5), ("inf", 5),
])
def test_max_rating_reads_float_like_integers_and_defaults_garbage_to_5(value, expected):
    attrs = "" if value is None else f'maxRating="{value}"'
    assert control(cfg(f'<Rating name="r" toName="t" {attrs}/>'), "r").max_rating == expected


@pytest.mark.parametrize("attrs, expected", [
    ('min="0" max="120"', (0.0, 120.0, None)),
    ('min="-1.5" max="2.5" step="0.5"', (-1.5, 2.5, 0.5)),
    ('min=" 3 "', (3.0, None, None)),
    ("", (None, None, None)),
    ('min="low" max="" step="nan"', (None, None, None)),
])
def test_number_bounds_and_step(attrs, expected):
    c = control(cfg(f'<Number name="n" toName="t" {attrs}/>'), "n")
    assert (c.min, c.max, c.step) == expected


@pytest.mark.parametrize("value, expected", [("true", True), ("True", True), ("false", False), ("yes", False),
                                             (None, False)])
def test_required(value, expected):
    attrs = "" if value is None else f'required="{value}"'
    assert control(cfg(f'<TextArea name="s" toName="t" {attrs}/>'), "s").required is expected


def test_labels_are_alias_or_value_in_config_order():
    config = cfg('<Choices name="c" toName="t"><Choice value="Zeta"/><Choice value="Alpha" alias="a"/>'
                 '<Choice value="Mid"/></Choices>')
    assert control(config, "c").labels == ("Zeta", "a", "Mid")


def test_objects_tags_fields_and_raw_attributes():
    config = cfg(choices(), '<TextArea name="s" toName="h" placeholder="hint" rows="3"/>',
                 '<Number name="n" toName="lit"/>',
                 objects=TEXT + '<HyperText name="h" value="$html"/><Text name="lit" value="fixed text"/>')
    lc = labelconfig.parse(config)
    assert [(o.name, o.tag, o.field) for o in lc.objects] == [
        ("t", "Text", "text"), ("h", "HyperText", "html"), ("lit", "Text", None)]
    s = lc.control("s")
    assert (s.tag, s.to_name, s.object.tag, s.object.field) == ("TextArea", "h", "HyperText", "html")
    assert s.attr["placeholder"] == "hint" and s.attr["rows"] == "3"
    assert lc.control("n").object.value == "fixed text"
    assert [c.name for c in lc.controls] == ["c", "s", "n"]


def test_tag_names_are_canonical_whatever_the_case_in_the_xml():
    assert control(cfg(choices().replace("Choices", "choices")), "c").tag == "Choices"


def test_per_region_and_dynamic_choices():
    config = cfg('<TextArea name="p" toName="t" perRegion="True"/>', '<Choices name="d" toName="t" value="$opts"/>')
    lc = labelconfig.parse(config)
    assert lc.control("p").per_region and not lc.control("p").dynamic
    assert lc.control("d").dynamic and not lc.control("d").per_region


def test_taxonomy_tree():
    config = cfg('<Taxonomy name="tax" toName="t">'
                 '<Choice value="Science"><Choice value="Physics"/><View><Choice value="Bio" alias="Biology"/></View>'
                 '</Choice><Choice value="Sport"/></Taxonomy>')
    tree = control(config, "tax").taxonomy
    assert tree.paths == (("Science",), ("Science", "Physics"), ("Science", "Biology"), ("Sport",))
    assert tree.leaves == {("Science", "Physics"), ("Science", "Biology"), ("Sport",)}
    assert tree.names == ("Science", "Physics", "Biology", "Sport")
    assert control(cfg(choices()), "c").taxonomy is None


# ---------------------------------------------------------------- errors and the cache

@pytest.mark.parametrize("config, message", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("<View><Choices", "cannot be parsed"),
    (cfg(choices(), choices()), "non-unique names: 'c'"),
])
def test_unusable_configs_raise_one_line_label_config_errors(config, message):
    with pytest.raises(LabelConfigError, match=message) as err:
        labelconfig.parse(config)
    assert "\n" not in str(err.value)


def test_validate_adds_label_studios_own_checks():
    config = cfg(choices(), objects='<Text name="t"/>')  # an object without value=
    labelconfig.parse(config)  # reads fine
    with pytest.raises(LabelConfigError, match="not valid for Label Studio") as err:
        labelconfig.validate(config)
    assert "\n" not in str(err.value)


def _sdk_verdict(config: str) -> bool:
    try:
        LabelInterface(config).validate()
    except Exception:
        return False
    return True


def _our_verdict(config: str) -> bool:
    try:
        labelconfig.validate(config)
    except LabelConfigError:
        return False
    return True


MANY = [f"option {i}" for i in range(300)]


@pytest.mark.parametrize("config", [
    cfg(choices(options=MANY)),
    cfg(choices(options=MANY).replace('<Choice value="option 150"/>', '<Choice alias="no value"/>')),
    cfg(choices(options=MANY).replace('<Choice value="option 7"/>', '<Choice value="7" hint="h"/>')),
    cfg(choices(), objects='<Text name="t"/>'),
    cfg('<Labels name="l" toName="t">' + "".join(f'<Label value="L{i}"/>' for i in range(50)) + "<Label/></Labels>"),
    cfg('<View>' + choices(name="a") + "</View><View>" + choices(name="b") + "</View>"),
    cfg('<Number name="n"/>'),
])
def test_the_fast_validation_agrees_with_the_sdk(config):
    """Label Studio's schema pass runs on one child per shape; the verdict is the SDK's own."""
    assert _our_verdict(config) == _sdk_verdict(config)


def test_parse_is_cached_by_content_and_bounded():
    config = cfg(choices('choice="multiple"'))
    first = labelconfig.parse(config)
    assert labelconfig.parse("".join(list(config))) is first  # an equal string, another object
    assert labelconfig._parse_cached.cache_info().maxsize == 64


def test_errors_are_cached_too():
    config = "<View><Choices"
    with pytest.raises(LabelConfigError) as one:
        labelconfig.parse(config)
    hits = labelconfig._parse_cached.cache_info().hits
    with pytest.raises(LabelConfigError) as two:
        labelconfig.parse(config)
    assert str(one.value) == str(two.value)
    assert labelconfig._parse_cached.cache_info().hits == hits + 1


# ---------------------------------------------------------------- both sides read the same values

SHARED = [
    cfg(choices('choice="Multiple"'), '<Rating name="r" toName="t" maxRating="5.0"/>',
        '<Number name="n" toName="t" min="0" max="10"/>'),
    cfg(choices('choice="single"'), '<Rating name="r" toName="t" maxRating="ten"/>',
        '<Number name="n" toName="t" min="x" max="10"/>'),
    cfg(choices('choice="MULTIPLE"'), '<Rating name="r" toName="t" maxRating="10"/>',
        '<Number name="n" toName="t" min="-2.5" max="2.5"/>'),
    cfg(choices(), '<Rating name="r" toName="t"/>', '<Number name="n" toName="t"/>'),
]


@pytest.mark.parametrize("config", SHARED)
def test_backend_and_scoring_see_the_same_values(config):
    plan = build_plan(config)
    schema = compile_schema(config)
    pc = {c.name: c for c in plan.controls}
    sc = schema.by_name
    assert pc["c"].multiple == sc["c"].spec.multiple
    assert tuple(pc["c"].labels) == sc["c"].spec.labels
    assert (plan.schema["properties"]["c"]["type"] == "array") == sc["c"].spec.multiple
    assert not sc["c"].single_choice == sc["c"].spec.multiple
    assert rating_handler.max_rating(pc["r"]) - 1 == sc["r"].spec.range
    lo, hi = number_handler._bounds(pc["n"])
    assert sc["n"].spec.range == (hi - lo if lo is not None and hi is not None else None)


def test_a_float_like_max_rating_scores_on_the_rating_scale():
    """maxRating="5.0": the backend asks for 1..5, and scoring now measures on the same 1..5 scale
    (it used to reject "5.0" and fall back to an exact match, scoring 2 vs 5 as 0)."""
    config = cfg('<Rating name="r" toName="t" maxRating="5.0"/>')
    assert "to 5 (highest)" in build_plan(config).instructions

    def rating(v):
        return [{"from_name": "r", "to_name": "t", "type": "rating", "value": {"rating": v}}]
    task = {"id": 1, "annotations": [{"id": 1, "ground_truth": True, "result": rating(5)}],
            "predictions": [{"id": 2, "model_version": "v1", "result": rating(2)}]}
    assert evaluate([task], config, "v1")["score"] == pytest.approx(0.25)


def test_choice_multiple_in_capitals_is_a_multiple_choice_for_the_backend():
    plan = build_plan(cfg(choices('choice="Multiple"')))
    assert plan.schema["properties"]["c"]["type"] == "array"
    regions, _ = plan.to_result({"c": ["A", "B"]}, {"text": "x"})
    assert regions[0]["value"] == {"choices": ["A", "B"]}


# ---------------------------------------------------------------- a very large config (issue 8, finding 9)

def test_a_config_with_40000_choices_is_planned_quickly_and_the_answer_is_cached():
    options = "".join(f'<Choice value="label {i:05d}"/>' for i in range(40_000))
    config = cfg(f'<Choices name="c" toName="t">{options}</Choices>')
    started = time.perf_counter()
    with pytest.raises(LabelConfigError, match="40000 enum values in all"):
        plan_for(config)
    first = time.perf_counter() - started
    started = time.perf_counter()
    with pytest.raises(LabelConfigError, match="40000 enum values in all"):
        plan_for(config)
    again = time.perf_counter() - started
    schema = compile_schema(config)  # scoring has no enum limit: the same parse serves it
    assert len(schema.by_name["c"].spec.labels) == 40_000
    print(f"\n40,000 choices ({len(config):,} bytes): plan_for {first:.2f} s, again {again * 1000:.1f} ms")
