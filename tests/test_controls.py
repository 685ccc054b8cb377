"""Every supported control tag end to end: answer -> regions that Label Studio's own validator accepts."""
from __future__ import annotations

import json

import pytest

from backend.controls import HANDLERS
from backend.controls.base import NOTE_CHARS, NOTES_KEPT, describe, dropped, new_stats, note, quality
from backend.schema import build_plan, strict_violations
from core.errors import AllDroppedError, MissingDataError, OutputError

TEXT = "Anna Smith met Bob in Paris. Later Bob flew to Berlin."

CHOICES = (
    '<View><Text name="text" value="$text"/>\n'
    '<Choices name="sentiment" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/></Choices>\n'
    '</View>'
)
CHOICES_MULTI = (
    '<View><Text name="text" value="$text"/>\n'
    '<Choices name="topics" toName="text" choice="multiple">'
    '<Choice value="Travel"/><Choice value="Sport"/><Choice value="Food"/></Choices>\n'
    '</View>'
)
CHOICES_ALIAS = (
    '<View><Text name="text" value="$text"/>\n'
    '<Choices name="sentiment" toName="text">'
    '<Choice value="Positive review" alias="pos"/><Choice value="Negative review" alias="neg"/></Choices>\n'
    '</View>'
)
LABELS = """<View><Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
<Text name="text" value="$text"/></View>"""
LABELS_MULTI = (
    '<View><Labels name="ner" toName="text" choice="multiple"><Label value="PER"/><Label value="VIP"/></Labels>\n'
    '<Text name="text" value="$text"/></View>'
)
HYPER_LABELS = """<View><HyperText name="page" value="$html"/>
<Labels name="ner" toName="page"><Label value="PER"/><Label value="LOC"/></Labels></View>"""
HYPERTEXTLABELS = """<View><HyperText name="page" value="$html"/>
<HyperTextLabels name="ents" toName="page"><Label value="PER"/><Label value="LOC"/></HyperTextLabels></View>"""
TEXTAREA = """<View><Text name="text" value="$text"/><TextArea name="summary" toName="text"/></View>"""
RATING = """<View><Text name="text" value="$text"/><Rating name="stars" toName="text" maxRating="10"/></View>"""
RATING_REQUIRED = (
    '<View><Text name="text" value="$text"/><Rating name="stars" toName="text" required="true"/></View>'
)
NUMBER = """<View><Text name="text" value="$text"/><Number name="people" toName="text" min="0" max="100"/></View>"""
NUMBER_STEP = (
    '<View><Text name="text" value="$text"/>'
    '<Number name="score" toName="text" min="0" max="1" step="0.1" required="true"/></View>'
)
TAXONOMY = (
    '<View><Text name="text" value="$text"/>\n'
    '<Taxonomy name="topic" toName="text">\n'
    '  <Choice value="Places"><Choice value="Europe"><Choice value="Paris"/><Choice value="Berlin"/></Choice>'
    '<Choice value="Asia"/></Choice>\n'
    '  <Choice value="People"/>\n'
    '</Taxonomy></View>'
)
TAXONOMY_LEAFS = TAXONOMY.replace('toName="text">', 'toName="text" leafsOnly="true" maxUsages="2">')
RECTANGLES = """<View><Image name="img" value="$image"/>
<RectangleLabels name="boxes" toName="img"><Label value="Car"/><Label value="Person"/></RectangleLabels></View>"""
MULTI = """<View>
  <Header value="Review"/>
  <Text name="title" value="$title"/>
  <Text name="body" value="$text"/>
  <Image name="photo" value="$image"/>
  <Choices name="sentiment" toName="body"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Choices name="photo_ok" toName="photo" choice="multiple"><Choice value="Sharp"/><Choice value="Relevant"/></Choices>
  <Labels name="ner" toName="body"><Label value="PER"/><Label value="LOC"/></Labels>
  <Labels name="title_ner" toName="title"><Label value="LOC"/></Labels>
  <RectangleLabels name="boxes" toName="photo"><Label value="Car"/></RectangleLabels>
  <TextArea name="summary" toName="body"/>
  <Rating name="stars" toName="body"/>
  <Number name="count" toName="photo"/>
  <Taxonomy name="topic" toName="body">
    <Choice value="Travel"><Choice value="City"/></Choice><Choice value="Other"/>
  </Taxonomy>
</View>"""

ALL_CONFIGS = {
    "choices": CHOICES, "choices_multi": CHOICES_MULTI, "choices_alias": CHOICES_ALIAS, "labels": LABELS,
    "labels_multi": LABELS_MULTI, "hyper_labels": HYPER_LABELS, "hypertextlabels": HYPERTEXTLABELS,
    "textarea": TEXTAREA, "rating": RATING, "rating_required": RATING_REQUIRED, "number": NUMBER,
    "number_step": NUMBER_STEP, "taxonomy": TAXONOMY, "taxonomy_leafs": TAXONOMY_LEAFS,
    "rectangles": RECTANGLES, "multi": MULTI,
}


def convert(config, answer, data):
    plan = build_plan(config)
    regions, stats = plan.to_result(answer, data)
    errors = plan.interface.validate_prediction(
        {"result": regions, "score": 0.5, "model_version": "v1"}, return_errors=True
    )
    assert errors == [], errors
    assert all(isinstance(r, dict) for r in regions)
    json.dumps(regions)  # plain JSON, ready for Label Studio
    return regions, stats


def values(regions, name=None):
    return [r["value"] for r in regions if name is None or r["from_name"] == name]


def test_registry_is_a_plain_dict_of_modules():
    assert isinstance(HANDLERS, dict)
    assert set(HANDLERS) == {
        "Choices", "Labels", "HyperTextLabels", "TextArea", "Rating", "Number", "Taxonomy", "RectangleLabels"
    }
    for tag, module in HANDLERS.items():
        assert module.TAG == tag
        for fn in ("schema", "describe", "to_regions"):
            assert callable(getattr(module, fn))


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
def test_every_schema_is_strict(name):
    plan = build_plan(ALL_CONFIGS[name])
    assert strict_violations(plan.schema) == []
    assert plan.schema["required"] == [c.name for c in plan.controls]


# --- Choices ----------------------------------------------------------------------

def test_single_choice():
    regions, stats = convert(CHOICES, {"sentiment": "Negative"}, {"text": TEXT})
    assert regions[0]["type"] == "choices" and regions[0]["to_name"] == "text"
    assert values(regions) == [{"choices": ["Negative"]}]


def test_single_choice_tolerates_case_and_a_one_item_list():
    regions, _ = convert(CHOICES, {"sentiment": [" negative "]}, {"text": TEXT})
    assert values(regions) == [{"choices": ["Negative"]}]


def test_single_choice_unknown_label_is_an_output_error():
    with pytest.raises(OutputError, match="unknown label 'Angry' for control 'sentiment'; allowed: .*Positive"):
        convert(CHOICES, {"sentiment": "Angry"}, {"text": TEXT})


def test_single_choice_missing_is_an_output_error():
    with pytest.raises(OutputError, match="no key 'sentiment'"):
        convert(CHOICES, {}, {"text": TEXT})
    with pytest.raises(OutputError):
        convert(CHOICES, {"sentiment": None}, {"text": TEXT})


def test_choice_alias_is_the_stored_value():
    plan = build_plan(CHOICES_ALIAS)
    assert plan.schema["properties"]["sentiment"]["enum"] == ["pos", "neg"]
    regions, _ = convert(CHOICES_ALIAS, {"sentiment": "neg"}, {"text": TEXT})
    assert values(regions) == [{"choices": ["neg"]}]


def test_multiple_choices_dedupe_and_drop_unknown():
    regions, stats = convert(CHOICES_MULTI, {"topics": ["Travel", "Food", "travel", "Politics"]}, {"text": TEXT})
    assert values(regions) == [{"choices": ["Travel", "Food"]}]
    assert stats["labels_dropped"] == 1 and "Politics" in stats["notes"][0]


def test_multiple_choices_empty_list_gives_no_region():
    regions, stats = convert(CHOICES_MULTI, {"topics": []}, {"text": TEXT})
    assert regions == []


def test_multiple_choices_wrong_type_is_an_output_error():
    with pytest.raises(OutputError, match="expected a list"):
        convert(CHOICES_MULTI, {"topics": {"Travel": True}}, {"text": TEXT})


# --- Labels over Text ---------------------------------------------------------------

def test_labels_quotes_become_offsets():
    answer = {"ner": [
        {"text": "Anna Smith", "label": "PER", "occurrence": 0},
        {"text": "Paris", "label": "LOC", "occurrence": 0},
    ]}
    regions, stats = convert(LABELS, answer, {"text": TEXT})
    assert values(regions) == [
        {"start": 0, "end": 10, "text": "Anna Smith", "labels": ["PER"]},
        {"start": 22, "end": 27, "text": "Paris", "labels": ["LOC"]},
    ]
    assert stats["spans_dropped"] == 0


def test_labels_repeated_passage_all_or_one():
    all_bob, _ = convert(LABELS, {"ner": [{"text": "Bob", "label": "PER", "occurrence": 0}]}, {"text": TEXT})
    assert [(v["start"], v["end"]) for v in values(all_bob)] == [(15, 18), (35, 38)]
    second, _ = convert(LABELS, {"ner": [{"text": "Bob", "label": "PER", "occurrence": 2}]}, {"text": TEXT})
    assert [(v["start"], v["end"]) for v in values(second)] == [(35, 38)]
    for v in values(all_bob):
        assert TEXT[v["start"]:v["end"]] == v["text"] == "Bob"


def test_labels_not_found_and_unknown_label_are_dropped_and_counted():
    answer = {"ner": [
        {"text": "Carol", "label": "PER", "occurrence": 0},
        {"text": "Berlin", "label": "ORG", "occurrence": 0},
        {"text": "berlin", "label": "LOC", "occurrence": 0},
    ]}
    regions, stats = convert(LABELS, answer, {"text": TEXT})
    assert values(regions) == [{"start": 47, "end": 53, "text": "Berlin", "labels": ["LOC"]}]
    assert stats["spans_dropped"] == 1 and stats["labels_dropped"] == 1


def test_labels_duplicates_collapse_and_multiple_merges():
    answer = {"ner": [
        {"text": "Bob", "label": "PER", "occurrence": 1}, {"text": "Bob", "label": "PER", "occurrence": 1}
    ]}
    regions, _ = convert(LABELS, answer, {"text": TEXT})
    assert len(regions) == 1
    answer = {"ner": [
        {"text": "Bob", "label": "PER", "occurrence": 1}, {"text": "Bob", "label": "VIP", "occurrence": 1}
    ]}
    regions, _ = convert(LABELS_MULTI, answer, {"text": TEXT})
    assert values(regions) == [{"start": 15, "end": 18, "text": "Bob", "labels": ["PER", "VIP"]}]


def test_labels_unicode_offsets_are_code_points():
    text = "🎉 Zoë visited 東京 today"
    answer = {"ner": [
        {"text": "Zoë", "label": "PER", "occurrence": 0}, {"text": "東京", "label": "LOC", "occurrence": 0}
    ]}
    regions, _ = convert(LABELS, answer, {"text": text})
    for v in values(regions):
        assert text[v["start"]:v["end"]] == v["text"]
    assert values(regions)[0]["start"] == 2


def test_labels_empty_list_gives_no_regions_but_a_missing_key_is_invalid_output():
    assert convert(LABELS, {"ner": []}, {"text": TEXT})[0] == []
    with pytest.raises(OutputError, match="no key 'ner'") as err:  # was: treated as "no answer"
        convert(LABELS, {}, {"text": TEXT})
    assert err.value.reason == "invalid_output"


@pytest.mark.parametrize("bad", [
    "Bob",
    [{"label": "PER"}],
    [{"text": 3, "label": "PER", "occurrence": 0}],
    [{"text": "Bob", "label": "PER", "occurrence": "first"}],
    ["Bob"],
])
def test_labels_wrong_types_are_output_errors(bad):
    with pytest.raises(OutputError):
        convert(LABELS, {"ner": bad}, {"text": TEXT})


def test_labels_need_the_task_text():
    with pytest.raises(MissingDataError, match="'text'.*has: other"):
        convert(LABELS, {"ner": [{"text": "Bob", "label": "PER", "occurrence": 0}]}, {"other": "x"})


# --- Labels / HyperTextLabels over HyperText -----------------------------------------

HTML = "<div><h1>Trip</h1><p>Anna met <b>Bob</b> in<br/>Paris &amp; Berlin.</p></div>"


def test_labels_on_hypertext_use_xpaths():
    answer = {"ner": [{"text": "Anna met Bob", "label": "PER", "occurrence": 0},
                      {"text": "Paris & Berlin", "label": "LOC", "occurrence": 0}]}
    regions, stats = convert(HYPER_LABELS, answer, {"html": HTML})
    first, second = values(regions)
    assert regions[0]["type"] == "labels"
    assert first == {
        "start": "/div[1]/p[1]/text()[1]", "startOffset": 0,
        "end": "/div[1]/p[1]/b[1]/text()[1]", "endOffset": 3,
        "globalOffsets": {"start": 4, "end": 16}, "text": "Anna met Bob", "labels": ["PER"],
    }
    assert second["start"] == second["end"] == "/div[1]/p[1]/text()[3]"
    assert (second["startOffset"], second["endOffset"]) == (0, 14)
    assert second["globalOffsets"] == {"start": 20, "end": 34}


def test_hypertextlabels_store_labels_under_their_own_key():
    answer = {"ents": [
        {"text": "Bob", "label": "PER", "occurrence": 0}, {"text": "Rome", "label": "LOC", "occurrence": 0}
    ]}
    regions, stats = convert(HYPERTEXTLABELS, answer, {"html": HTML})
    assert regions[0]["type"] == "hypertextlabels"
    assert values(regions)[0]["hypertextlabels"] == ["PER"]
    assert values(regions)[0]["text"] == "Bob"
    assert stats["spans_dropped"] == 1


# --- TextArea ---------------------------------------------------------------------------

def test_textarea():
    regions, _ = convert(TEXTAREA, {"summary": "  Two people travel.  "}, {"text": TEXT})
    assert regions[0]["type"] == "textarea"
    assert values(regions) == [{"text": ["Two people travel."]}]


def test_textarea_empty_gives_no_region():
    assert convert(TEXTAREA, {"summary": ""}, {"text": TEXT})[0] == []
    assert convert(TEXTAREA, {"summary": None}, {"text": TEXT})[0] == []


def test_textarea_wrong_type():
    with pytest.raises(OutputError, match="expected a string"):
        convert(TEXTAREA, {"summary": 12}, {"text": TEXT})


# --- Rating -----------------------------------------------------------------------------

def test_rating():
    regions, _ = convert(RATING, {"stars": 7}, {"text": TEXT})
    assert values(regions) == [{"rating": 7}] and regions[0]["type"] == "rating"
    assert convert(RATING, {"stars": 7.0}, {"text": TEXT})[0][0]["value"] == {"rating": 7}


def test_rating_zero_means_none_unless_required():
    assert convert(RATING, {"stars": 0}, {"text": TEXT})[0] == []
    with pytest.raises(OutputError, match="outside 1..5"):
        convert(RATING_REQUIRED, {"stars": 0}, {"text": TEXT})


@pytest.mark.parametrize("bad", [11, -1, 2.5, "many", True])
def test_rating_bad_values(bad):
    with pytest.raises(OutputError):
        convert(RATING, {"stars": bad}, {"text": TEXT})


# --- Number -----------------------------------------------------------------------------

def test_number():
    regions, _ = convert(NUMBER, {"people": 2}, {"text": TEXT})
    assert values(regions) == [{"number": 2}] and regions[0]["type"] == "number"


def test_number_null_means_none():
    assert build_plan(NUMBER).schema["properties"]["people"]["type"] == ["integer", "null"]
    assert convert(NUMBER, {"people": None}, {"text": TEXT})[0] == []


def test_number_fractional_step():
    plan = build_plan(NUMBER_STEP)
    assert plan.schema["properties"]["score"]["type"] == "number"
    assert values(convert(NUMBER_STEP, {"score": 0.7}, {"text": TEXT})[0]) == [{"number": 0.7}]
    with pytest.raises(OutputError, match="needs a number"):
        convert(NUMBER_STEP, {"score": None}, {"text": TEXT})


@pytest.mark.parametrize("bad", [101, -3, "lots", [1], float("nan")])
def test_number_bad_values(bad):
    with pytest.raises(OutputError):
        convert(NUMBER, {"people": bad}, {"text": TEXT})


# --- Taxonomy ---------------------------------------------------------------------------

def test_taxonomy_paths():
    answer = {"topic": [["Places", "Europe", "Paris"], ["People"]]}
    regions, stats = convert(TAXONOMY, answer, {"text": TEXT})
    assert values(regions) == [{"taxonomy": [["Places", "Europe", "Paris"], ["People"]]}]
    assert regions[0]["type"] == "taxonomy"


def test_taxonomy_schema_enumerates_node_names():
    plan = build_plan(TAXONOMY)
    step = plan.schema["properties"]["topic"]["items"]["items"]
    assert step["enum"] == ["Places", "Europe", "Paris", "Berlin", "Asia", "People"]
    assert "Places / Europe / Berlin" in plan.instructions


def test_taxonomy_repairs_and_drops():
    answer = {"topic": [["Berlin"], ["places", "europe"], ["Places", "Mars"], ["Nowhere"], "People"]}
    regions, stats = convert(TAXONOMY, answer, {"text": TEXT})
    assert values(regions) == [{"taxonomy": [["Places", "Europe", "Berlin"], ["Places", "Europe"], ["People"]]}]
    assert stats["labels_dropped"] == 2


def test_taxonomy_leafs_only_and_max_usages():
    answer = {"topic": [["Places"], ["Places", "Asia"], ["People"], ["Places", "Europe", "Paris"]]}
    regions, stats = convert(TAXONOMY_LEAFS, answer, {"text": TEXT})
    assert values(regions) == [{"taxonomy": [["Places", "Asia"], ["People"]]}]
    assert stats["labels_dropped"] == 2


def test_taxonomy_wrong_types():
    with pytest.raises(OutputError):
        convert(TAXONOMY, {"topic": "People"}, {"text": TEXT})
    with pytest.raises(OutputError):
        convert(TAXONOMY, {"topic": [[1, 2]]}, {"text": TEXT})
    assert convert(TAXONOMY, {"topic": []}, {"text": TEXT})[0] == []


# --- RectangleLabels --------------------------------------------------------------------

def test_rectangles():
    answer = {"boxes": [{"label": "Car", "x": 10, "y": 20, "width": 30, "height": 15.5}]}
    regions, stats = convert(RECTANGLES, answer, {"image": "https://example.com/a.jpg"})
    assert regions[0]["type"] == "rectanglelabels" and regions[0]["to_name"] == "img"
    assert values(regions) == [
        {"x": 10.0, "y": 20.0, "width": 30.0, "height": 15.5, "rotation": 0, "rectanglelabels": ["Car"]}
    ]


def test_rectangles_clipped_and_degenerate_dropped():
    answer = {"boxes": [
        {"label": "Car", "x": -5, "y": 90, "width": 20, "height": 20},   # clipped to 0..15 x 90..100
        {"label": "Car", "x": 120, "y": 10, "width": 5, "height": 5},    # outside: dropped
        {"label": "Person", "x": 10, "y": 10, "width": 0, "height": 5},  # no area: dropped
        {"label": "Truck", "x": 10, "y": 10, "width": 5, "height": 5},   # unknown label
    ]}
    regions, stats = convert(RECTANGLES, answer, {"image": "https://example.com/a.jpg"})
    assert values(regions) == [
        {"x": 0.0, "y": 90.0, "width": 15.0, "height": 10.0, "rotation": 0, "rectanglelabels": ["Car"]}
    ]
    assert stats["boxes_dropped"] == 2 and stats["labels_dropped"] == 1


@pytest.mark.parametrize("bad", [
    {"label": "Car", "x": "left", "y": 1, "width": 2, "height": 2},
    {"label": "Car", "y": 1, "width": 2, "height": 2},
    "Car at 10,10",
])
def test_rectangles_wrong_types(bad):
    with pytest.raises(OutputError):
        convert(RECTANGLES, {"boxes": [bad]}, {"image": "https://example.com/a.jpg"})


# --- several objects and controls ---------------------------------------------------------

def test_multi_object_multi_control():
    data = {"title": "Weekend in Paris", "text": TEXT, "image": "https://example.com/p.jpg"}
    answer = {
        "sentiment": "Positive",
        "photo_ok": ["Sharp"],
        "ner": [
            {"text": "Anna Smith", "label": "PER", "occurrence": 0}, {"text": "Paris", "label": "LOC", "occurrence": 1}
        ],
        "title_ner": [{"text": "Paris", "label": "LOC", "occurrence": 0}],
        "boxes": [{"label": "Car", "x": 1, "y": 2, "width": 3, "height": 4}],
        "summary": "A trip.",
        "stars": 4,
        "count": 3,
        "topic": [["Travel", "City"]],
        "unexpected": 1,
    }
    regions, stats = convert(MULTI, answer, data)
    by = {}
    for r in regions:
        by.setdefault(r["from_name"], []).append(r)
    assert set(by) == {"sentiment", "photo_ok", "ner", "title_ner", "boxes", "summary", "stars", "count", "topic"}
    assert by["photo_ok"][0]["to_name"] == "photo" and by["boxes"][0]["to_name"] == "photo"
    assert by["title_ner"][0]["to_name"] == "title"
    assert by["title_ner"][0]["value"]["start"] == 11  # offsets in the title, not the body
    assert by["ner"][1]["value"]["start"] == 22
    assert any("unexpected" in n for n in stats["notes"])
    assert len({r["id"] for r in regions}) == len(regions)


def test_region_ids_are_deterministic():
    answer = {"ner": [{"text": "Bob", "label": "PER", "occurrence": 0}]}
    first, _ = convert(LABELS, answer, {"text": TEXT})
    again, _ = convert(LABELS, answer, {"text": TEXT})
    assert [r["id"] for r in first] == [r["id"] for r in again]


@pytest.mark.parametrize("answer", [None, [], "Positive", 3])
def test_answer_must_be_an_object(answer):
    with pytest.raises(OutputError, match="JSON object"):
        build_plan(CHOICES).to_result(answer, {"text": TEXT})


# --- the real Label Studio accepts and stores every kind of region -----------------------

ALL_TAGS = """<View>
  <Text name="text" value="$text"/>
  <HyperText name="page" value="$html"/>
  <Image name="img" value="$image"/>
  <Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Choices name="topics" toName="text" choice="multiple"><Choice value="Travel"/><Choice value="Food"/></Choices>
  <Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels>
  <Labels name="page_ner" toName="page"><Label value="PER"/></Labels>
  <HyperTextLabels name="page_ents" toName="page"><Label value="LOC"/></HyperTextLabels>
  <TextArea name="summary" toName="text"/>
  <Rating name="stars" toName="text"/>
  <Number name="people" toName="text"/>
  <Taxonomy name="topic" toName="text"><Choice value="Places"><Choice value="Europe"/></Choice></Taxonomy>
  <RectangleLabels name="boxes" toName="img"><Label value="Car"/></RectangleLabels>
</View>"""


@pytest.mark.labelstudio
def test_real_label_studio_imports_every_region_kind(label_studio):
    data = {"text": TEXT, "html": HTML, "image": "https://example.com/car.jpg"}
    answer = {
        "sentiment": "Positive", "topics": ["Travel"],
        "ner": [{"text": "Bob", "label": "PER", "occurrence": 0}, {"text": "Paris", "label": "LOC", "occurrence": 0}],
        "page_ner": [{"text": "Anna met Bob", "label": "PER", "occurrence": 0}],
        "page_ents": [{"text": "Paris & Berlin", "label": "LOC", "occurrence": 0}],
        "summary": "A trip.", "stars": 4, "people": 2, "topic": [["Places", "Europe"]],
        "boxes": [{"label": "Car", "x": 5, "y": 5, "width": 50, "height": 40}],
    }
    regions, stats = convert(ALL_TAGS, answer, data)
    assert len(regions) == 12 and stats["spans_dropped"] == 0
    ls = label_studio.sdk()
    project = label_studio.create_project(ALL_TAGS, title="every control tag")
    ls.projects.import_tasks(id=project, request=[{"data": data}])
    (task,) = list(ls.tasks.list(project=project))
    # /import/predictions runs Label Studio's validator and silently skips what fails it
    rejected = [{"id": "bad", "from_name": "stars", "to_name": "text", "type": "rating", "value": {"rating": 99}}]
    assert ls.projects.import_predictions(
        id=project, request=[{"task": task.id, "result": rejected, "model_version": "control-case"}]
    ).created == 0
    assert ls.projects.import_predictions(
        id=project, request=[{"task": task.id, "result": regions, "score": 0.5, "model_version": "controls-test"}]
    ).created == 1
    (task,) = list(ls.tasks.list(project=project, fields="all"))
    (prediction,) = task.predictions
    stored = prediction.result
    assert prediction.model_version == "controls-test"
    assert {r["id"]: r["value"] for r in stored} == {r["id"]: r["value"] for r in regions}


# --- issue 8 finding 18: answers that do not match the schema; answers whose every region is dropped ----

EMPTY_ANSWER = {  # "nothing" for every control of MULTI, where the schema allows it
    "ner": [], "title_ner": [], "photo_ok": [], "boxes": [], "summary": "", "stars": 0, "count": None, "topic": [],
}
MULTI_DATA = {"title": "Paris", "text": TEXT, "image": "https://example.com/a.jpg"}


def test_an_empty_object_is_invalid_output_naming_every_missing_key():
    for config in ALL_CONFIGS.values():
        with pytest.raises(OutputError, match="no key") as err:
            build_plan(config).to_result({}, MULTI_DATA | {"html": "<p>x</p>"})
        assert err.value.reason == "invalid_output"
    with pytest.raises(OutputError, match="'stars' \\(Rating 'stars'\\).*'count' \\(Number 'count'\\)"):
        build_plan(MULTI).to_result({"sentiment": "Positive", "ner": []}, MULTI_DATA)


def test_nothing_for_every_control_is_a_correct_empty_prediction():
    regions, stats = convert(MULTI.replace('<Choices name="sentiment" toName="body"><Choice value="Positive"/>'
                                           '<Choice value="Negative"/></Choices>', ""), EMPTY_ANSWER, MULTI_DATA)
    assert regions == [] and not any(stats[f"{k}_dropped"] for k in ("spans", "labels", "boxes", "values"))


@pytest.mark.parametrize("config, answer", [
    (LABELS, {"ner": [{"text": "Carol", "label": "PER", "occurrence": 0}]}),            # passage not in the text
    (LABELS, {"ner": [{"text": "Bob", "label": "ORG", "occurrence": 0}]}),              # unknown label
    (CHOICES_MULTI, {"topics": ["Politics"]}),
    (TAXONOMY, {"topic": [["Mars"]]}),
    (TAXONOMY_LEAFS, {"topic": [["Places"]]}),
    (RECTANGLES, {"boxes": [{"label": "Car", "x": 120, "y": 0, "width": 5, "height": 5}]}),
])
def test_every_region_dropped_is_all_dropped_not_an_empty_prediction(config, answer):
    with pytest.raises(AllDroppedError, match="every region of the answer was dropped") as err:
        build_plan(config).to_result(answer, {"text": TEXT, "image": "https://example.com/a.jpg"})
    assert err.value.reason == "all_dropped" and dropped(err.value.stats)


def test_all_dropped_counts_even_when_other_controls_answered_nothing():
    answer = EMPTY_ANSWER | {"sentiment": "Positive"}
    assert convert(MULTI, answer, MULTI_DATA)[0]  # the single choice is a region
    no_choice = MULTI.replace('<Choices name="sentiment" toName="body"><Choice value="Positive"/>'
                              '<Choice value="Negative"/></Choices>', "")
    answer = EMPTY_ANSWER | {"ner": [{"text": "Zed", "label": "PER", "occurrence": 0}]}
    with pytest.raises(AllDroppedError):
        build_plan(no_choice).to_result(answer, MULTI_DATA)


def test_some_regions_dropped_keeps_the_rest_and_counts_the_drops():
    answer = {"ner": [{"text": "Carol", "label": "PER", "occurrence": 0},
                      {"text": "Paris", "label": "LOC", "occurrence": 0}]}
    regions, stats = convert(LABELS, answer, {"text": TEXT})
    assert len(regions) == 1 and quality(stats) == {
        "dropped": {"spans": 1}, "repaired": 0, "notes": ["ner: passage not found in the text: 'Carol'"]}
    assert describe(stats) == "dropped 1 spans; ner: passage not found in the text: 'Carol'"


NUMBER_DEFAULT = """<View><Text name="text" value="$text"/><Number name="n" toName="text"/></View>"""
NUMBER_ODD = """<View><Text name="text" value="$text"/>
<Number name="n" toName="text" min="1" max="9" step="2"/></View>"""


@pytest.mark.parametrize("config, answer", [
    (NUMBER, 2.5),            # a whole-number Number (default step 1) answered 2.5
    (NUMBER_DEFAULT, 0.5),
    (NUMBER_STEP, 0.25),      # step 0.1
    (NUMBER_ODD, 4),          # steps of 2 from min 1: 1, 3, 5, 7, 9
    (NUMBER_ODD, 11),         # above max
])
def test_number_off_its_step_or_range_is_invalid_output(config, answer):
    name = build_plan(config).controls[0].name
    with pytest.raises(OutputError, match="not an allowed value|outside the allowed range") as err:
        convert(config, {name: answer}, {"text": TEXT})
    assert err.value.reason == "invalid_output"


def test_number_on_its_step_is_kept_and_float_noise_is_snapped():
    assert values(convert(NUMBER_STEP, {"score": 0.1 + 0.2}, {"text": TEXT})[0]) == [{"number": 0.3}]
    assert values(convert(NUMBER_ODD, {"n": 7}, {"text": TEXT})[0]) == [{"number": 7}]
    assert values(convert(NUMBER_ODD, {"n": "3"}, {"text": TEXT})[0]) == [{"number": 3}]  # a numeric string
    assert "in steps of 0.1 from 0" in build_plan(NUMBER_STEP).instructions


@pytest.mark.parametrize("bad", [2.5, "2.5", [3], {"stars": 3}, None])
def test_required_rating_off_the_integer_grid_or_wrong_type_is_invalid_output(bad):
    with pytest.raises(OutputError) as err:
        convert(RATING_REQUIRED, {"stars": bad}, {"text": TEXT})
    assert err.value.reason == "invalid_output"


# --- issue 8 finding 19: repairs are counted, not silent ---------------------------------------------

TAXONOMY_SCIENCE = """<View><Text name="text" value="$text"/>
<Taxonomy name="topic" toName="text">
  <Choice value="Science"><Choice value="Physics"><Choice value="Optics"/></Choice><Choice value="Biology"/></Choice>
  <Choice value="Sport"><Choice value="Football"/></Choice>
</Taxonomy></View>"""


def test_taxonomy_path_rewritten_to_the_only_node_of_that_name_is_counted_as_repaired():
    regions, stats = convert(TAXONOMY_SCIENCE, {"topic": [["Sport", "Optics"]]}, {"text": TEXT})
    assert values(regions) == [{"taxonomy": [["Science", "Physics", "Optics"]]}]
    assert stats["repaired"] == 1 and quality(stats)["repaired"] == 1
    assert "guessed as ['Science', 'Physics', 'Optics']" in stats["notes"][0]
    assert describe(stats).startswith("repaired 1; topic: path ['Sport', 'Optics'] is not in the taxonomy")


def test_taxonomy_case_only_differences_are_not_guesses():
    regions, stats = convert(TAXONOMY_SCIENCE, {"topic": [["science", "PHYSICS"]]}, {"text": TEXT})
    assert values(regions) == [{"taxonomy": [["Science", "Physics"]]}]
    assert stats["repaired"] == 0 and describe(stats) == ""


def test_clipped_boxes_are_counted_as_repaired():
    answer = {"boxes": [{"label": "Car", "x": -5, "y": 90, "width": 20, "height": 20}]}
    regions, stats = convert(RECTANGLES, answer, {"image": "https://example.com/a.jpg"})
    assert len(regions) == 1 and stats["repaired"] == 1 and "clipped" in stats["notes"][0]


def test_ledger_notes_are_capped():
    stats = new_stats()
    for i in range(20):
        note(stats, f"note {i} " + "x" * 500)
    kept = quality(stats)["notes"]
    assert len(kept) == NOTES_KEPT and all(len(n) == NOTE_CHARS for n in kept)
