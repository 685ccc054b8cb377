"""Prompt rendering: system prompt, instruction filled from task data, appended objects, images."""
from __future__ import annotations

import base64

import pytest

from backend.media import MediaResolver
from backend.prompt import ANSWER_RULE, render
from backend.providers.base import ImagePart, TextPart
from backend.schema import build_plan
from backend.versions import parse_versions
from core.errors import MediaError, MissingDataError
from core.settings import Settings
from tests.test_controls import CHOICES, HYPER_LABELS, LABELS, MULTI, RECTANGLES

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
MEDIA = MediaResolver(Settings())


def version(instruction: str):
    doc = {"versions": [{"id": "v1", "provider": "openai", "model": "gpt-4o-mini", "instruction": instruction}]}
    return parse_versions(doc).get("v1")


def test_system_prompt_is_instructions_plus_json_rule():
    plan = build_plan(CHOICES)
    system, _ = render(version("Classify: {text}"), plan, {"data": {"text": "Fine."}}, MEDIA)
    assert system.startswith(plan.instructions)
    assert system.endswith(ANSWER_RULE)


def test_instruction_filled_and_text_kept_verbatim():
    text = "  Línea 1\r\n\tlínea 2 — «quoted» {braces} 🎉  "
    plan = build_plan(CHOICES)
    _, parts = render(version("Review:\n{text}\nWhat is the sentiment?"), plan, {"data": {"text": text}}, MEDIA)
    assert parts == [TextPart(f"Review:\n{text}\nWhat is the sentiment?")]
    assert text in parts[0].text


def test_object_text_appended_when_the_instruction_does_not_use_it():
    plan = build_plan(LABELS)
    _, parts = render(version("Find the people and places."), plan, {"data": {"text": "Anna met Bob."}}, MEDIA)
    assert parts[0].text == "Find the people and places.\n\ntext:\nAnna met Bob."


def test_hypertext_markup_is_kept_verbatim():
    plan = build_plan(HYPER_LABELS)
    html = "<p>Anna met <b>Bob</b></p>"
    _, parts = render(version("Label the page."), plan, {"data": {"html": html}}, MEDIA)
    assert html in parts[0].text


def test_missing_field_names_the_field_and_what_the_task_has():
    plan = build_plan(CHOICES)
    with pytest.raises(MissingDataError, match=r"\{review\}.*no field 'review'.*has: id, text"):
        render(version("Classify: {review}"), plan, {"data": {"text": "x", "id": 3}}, MEDIA)


def test_missing_object_field_is_an_error_too():
    plan = build_plan(LABELS)
    with pytest.raises(MissingDataError, match="Text 'text' reads task field 'text'.*has: body"):
        render(version("Find people."), plan, {"data": {"body": "x"}}, MEDIA)


def test_task_without_data():
    with pytest.raises(MissingDataError, match="no `data`"):
        render(version("x"), build_plan(CHOICES), {"id": 1}, MEDIA)


def test_nested_and_non_string_values():
    plan = build_plan(CHOICES)
    data = {"text": "t", "meta": {"lang": "de", "tags": ["a", "b"]}, "n": 3, "items": ["x", "y"]}
    _, parts = render(version("{meta.lang} {meta.tags} {n} {items[1]} {meta}"), plan, {"data": data}, MEDIA)
    assert parts[0].text.startswith('de ["a", "b"] 3 y {"lang": "de", "tags": ["a", "b"]}')
    with pytest.raises(MissingDataError, match="meta.country"):
        render(version("{meta.country}"), plan, {"data": data}, MEDIA)


def test_literal_braces_and_format_specs():
    plan = build_plan(CHOICES)
    _, parts = render(
        version('Answer {{"sentiment": ...}} for: {text:.5}'), plan, {"data": {"text": "abcdefgh"}}, MEDIA
    )
    assert parts[0].text.startswith('Answer {"sentiment": ...} for: abcde')


def test_image_field_becomes_marker_and_part():
    plan = build_plan(RECTANGLES)
    _, parts = render(
        version("Box the cars in {image}."), plan, {"data": {"image": "https://example.com/c.jpg"}}, MEDIA
    )
    assert parts[0] == TextPart("Box the cars in [image: image].")
    assert parts[1] == ImagePart(url="https://example.com/c.jpg")
    assert len(parts) == 2


def test_unreferenced_image_object_is_appended():
    plan = build_plan(RECTANGLES)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    _, parts = render(version("Box the cars."), plan, {"data": {"image": data_url}}, MEDIA)
    assert parts[0].text == "Box the cars.\n\n[image: image]"
    assert parts[1].data == PNG and parts[1].media_type == "image/png"


def test_image_referenced_twice_is_sent_once():
    plan = build_plan(RECTANGLES)
    _, parts = render(
        version("{image} and again {image}"), plan, {"data": {"image": "https://example.com/c.jpg"}}, MEDIA
    )
    assert parts[0].text == "[image: image] and again [image: image]"
    assert len(parts) == 2


def test_image_that_cannot_be_resolved_raises_media_error():
    plan = build_plan(RECTANGLES)
    with pytest.raises(MediaError):
        render(version("Box the cars."), plan, {"data": {"image": "s3://bucket/c.jpg"}}, MEDIA)


def test_several_objects_in_config_order():
    plan = build_plan(MULTI)
    data = {"title": "Trip", "text": "Anna went to Paris.", "image": "https://example.com/p.jpg"}
    _, parts = render(version("Title: {title}\nLabel everything."), plan, {"data": data}, MEDIA)
    assert parts[0].text == "Title: Trip\nLabel everything.\n\ntext:\nAnna went to Paris.\n\n[image: image]"
    assert parts[1] == ImagePart(url="https://example.com/p.jpg")
