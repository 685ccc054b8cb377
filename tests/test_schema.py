"""Label config -> plan: strict schema, instructions, errors, skipped controls, caching."""
from __future__ import annotations

import copy

import pytest

from backend.schema import build_plan, plan_for, strict_violations
from core.errors import LabelConfigError
from tests.test_controls import ALL_CONFIGS, CHOICES, MULTI, TAXONOMY

# --- strict_violations itself --------------------------------------------------------

GOOD = {
    "type": "object",
    "properties": {
        "a": {"type": "string", "enum": ["x", "y"]},
        "b": {"type": "array", "items": {
            "type": "object",
            "properties": {"t": {"type": "string"}, "n": {"type": ["integer", "null"]}},
            "required": ["t", "n"],
            "additionalProperties": False,
        }},
    },
    "required": ["a", "b"],
    "additionalProperties": False,
}


def broken(**patch):
    schema = copy.deepcopy(GOOD)
    for path, value in patch.items():
        node = schema
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return schema


def test_good_schema_has_no_violations():
    assert strict_violations(GOOD) == []


@pytest.mark.parametrize("patch, expected", [
    ({"additionalProperties": None}, "additionalProperties"),
    ({"properties__b__items__additionalProperties": True}, "$.b[]: object must set additionalProperties"),
    ({"required": ["a"]}, "missing: ['b']"),
    ({"required": ["a", "b", "c"]}, "unknown properties ['c']"),
    ({"properties__a__oneOf": [{"type": "string"}]}, "'oneOf'"),
    ({"properties__b__uniqueItems": True}, "'uniqueItems'"),
    ({"properties__b__minItems": 2}, "minItems may only be 0 or 1"),
    ({"properties__b__maxItems": 3}, "'maxItems'"),
    ({"properties__a__minLength": 1}, "'minLength'"),
    ({"properties__b__items__properties__n__minimum": 0}, "'minimum'"),
    ({"properties__a__pattern": "^x"}, "'pattern'"),
    ({"properties__a__format": "binary"}, "unsupported format"),
    ({"properties__a__type": ["string", "integer"]}, "type list"),
    ({"properties__a__type": "text"}, "unknown type"),
    ({"properties__a__type": None, "properties__a__enum": None}, "needs a type"),
    ({"properties__b__items": None}, "array must define items"),
    ({"properties__a__enum": ["x", "x"]}, "unique"),
    ({"properties__a__enum": [{"v": 1}]}, "enum values must be"),
    ({"properties__a__allOf": [{"type": "string"}]}, "'allOf'"),
    ({"properties__a__default": "x"}, "'default'"),
])
def test_each_rule_is_caught(patch, expected):
    problems = strict_violations(broken(**patch))
    assert any(expected in p for p in problems), problems


def test_root_must_be_a_plain_object():
    assert strict_violations({"anyOf": [GOOD]})
    assert strict_violations({"type": "array", "items": {"type": "string"}})


def test_size_limits():
    many = {"type": "string", "enum": [f"label-{i}" for i in range(1001)]}
    schema = {"type": "object", "properties": {"a": many}, "required": ["a"], "additionalProperties": False}
    assert any("enum values in all" in p for p in strict_violations(schema))
    long = {"type": "string", "enum": [f"{i:04d}" + "x" * 60 for i in range(300)]}
    schema["properties"]["a"] = long
    assert any("15,000 characters" in p for p in strict_violations(schema))
    unions = {f"n{i}": {"type": ["number", "null"]} for i in range(17)}
    schema = {"type": "object", "properties": unions, "required": list(unions), "additionalProperties": False}
    assert any("nullable/anyOf" in p for p in strict_violations(schema))
    deep = {"type": "string"}
    for _ in range(11):
        deep = {"type": "object", "properties": {"d": deep}, "required": ["d"], "additionalProperties": False}
    assert any("nested more than" in p for p in strict_violations(deep))


def test_the_sdk_schema_is_not_strict_and_ours_is():
    plan = build_plan(MULTI)
    sdk_problems = strict_violations(plan.interface.to_json_schema())
    assert sdk_problems  # oneOf / uniqueItems / optional keys: why we build our own
    assert strict_violations(plan.schema) == []


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_generated_schemas_are_strict_and_closed(name):
    plan = build_plan(ALL_CONFIGS[name])
    schema = plan.schema
    assert strict_violations(schema) == []
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == {c.name for c in plan.controls}
    assert plan.schema_name and plan.schema_name.replace("_", "").isalnum()


# --- plan contents --------------------------------------------------------------------

def test_plan_parts():
    plan = build_plan(MULTI)
    assert [c.name for c in plan.controls] == [
        "sentiment", "photo_ok", "ner", "title_ner", "boxes", "summary", "stars", "count", "topic"
    ]
    assert plan.object_fields == ["title", "text", "image"]
    assert plan.image_fields == ["image"]
    assert plan.skipped_controls == ()
    for c in plan.controls:
        assert f'"{c.name}"' in plan.instructions
    assert "exactly one label, one of: \"Positive\", \"Negative\"" in plan.instructions
    assert "1 (lowest) to 5" in plan.instructions
    assert "never give character offsets" in plan.instructions
    assert "percent" in plan.instructions


def test_plan_for_is_cached_by_config_string():
    assert plan_for(CHOICES) is plan_for(CHOICES)
    assert plan_for(CHOICES) is not plan_for(TAXONOMY)


def test_unsupported_controls_are_skipped_and_listed():
    config = """<View><Image name="img" value="$image"/><Text name="text" value="$text"/>
      <PolygonLabels name="poly" toName="img"><Label value="A"/></PolygonLabels>
      <KeyPointLabels name="kp" toName="img"><Label value="B"/></KeyPointLabels>
      <TextArea name="per" toName="text" perRegion="true"/>
      <Choices name="dyn" toName="text" value="$options"/>
      <Choices name="ok" toName="text"><Choice value="Yes"/><Choice value="No"/></Choices>
    </View>"""
    plan = build_plan(config)
    assert [c.name for c in plan.controls] == ["ok"]
    skipped = " | ".join(plan.skipped_controls)
    for name in ("poly", "kp", "per", "dyn"):
        assert repr(name) in skipped
    assert "not supported" in skipped and "per-region" in skipped and "dynamic" in skipped


# --- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ("", "empty"),
    ("<View><Text name='t' value='$text'/>", "cannot be parsed"),
    ("<View><Text name='t' value='$text'/></View>", "no control this backend can pre-label"),
    ("<View><Image name='i' value='$img'/><PolygonLabels name='p' toName='i'><Label value='A'/></PolygonLabels></View>",
     "Skipped: PolygonLabels 'p'"),
    ("<View><Image name='i' value='$img'/><Labels name='l' toName='i'><Label value='A'/></Labels></View>",
     "Labels 'l' points at the Image 'i'"),
    ("<View><Text name='t' value='$text'/>"
     "<RectangleLabels name='r' toName='t'><Label value='A'/></RectangleLabels></View>",
     "RectangleLabels only on Image"),
    ("<View><Audio name='a' value='$audio'/><Choices name='c' toName='a'><Choice value='A'/></Choices></View>",
     "points at the Audio 'a'"),
    ("<View><Text name='t' value='$url' valueType='url'/>"
     "<Choices name='c' toName='t'><Choice value='A'/></Choices></View>",
     "valueType=\"url\""),
    ("<View><Text name='t' value='$text'/><Choices name='c' toName='missing'><Choice value='A'/></Choices></View>",
     "missing"),
    ("<View><Text name='t' value='$text'/><Choices name='c' toName='t'><Choice value='A'/></Choices>"
     "<Choices name='c' toName='t'><Choice value='B'/></Choices></View>", "non-unique"),
])
def test_bad_configs_raise_label_config_error(config, message):
    with pytest.raises(LabelConfigError, match=message.replace("(", r"\(")):
        build_plan(config)


def test_too_many_choices_is_a_clear_error():
    options = "".join(f"<Choice value='option {i}'/>" for i in range(1200))
    config = f"<View><Text name='t' value='$text'/><Choices name='c' toName='t'>{options}</Choices></View>"
    with pytest.raises(LabelConfigError, match="structured outputs would reject.*1200 enum values"):
        build_plan(config)


def test_large_taxonomy_drops_the_enum_but_stays_usable():
    leaves = "".join(f"<Choice value='leaf {i}'/>" for i in range(300))
    config = (
        "<View><Text name='t' value='$text'/>"
        f"<Taxonomy name='tax' toName='t'><Choice value='root'>{leaves}</Choice></Taxonomy></View>"
    )
    plan = build_plan(config)
    assert "enum" not in plan.schema["properties"]["tax"]["items"]["items"]
    assert strict_violations(plan.schema) == []
    regions, stats = plan.to_result({"tax": [["root", "leaf 7"], ["leaf 9"], ["nope"]]}, {"text": "x"})
    assert regions[0]["value"] == {"taxonomy": [["root", "leaf 7"], ["root", "leaf 9"]]}
    assert stats["labels_dropped"] == 1
    assert plan.interface.validate_prediction({"result": regions}, return_errors=True) == []
