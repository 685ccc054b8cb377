"""Prompt versions file: parsing, validation messages, defaults."""
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from backend.providers import PROVIDERS
from backend.versions import load_versions, parse_versions
from core.errors import VersionError
from core.settings import Settings

GOOD = {
    "default": "b",
    "versions": [
        {"id": "a", "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label {text}",
         "params": {"temperature": 0}},
        {"id": "b", "provider": "anthropic", "model": "claude-haiku-4-5", "instruction": "See {image} and {meta}",
         "price": {"input": 1, "output": 5}},
    ],
}


def one(**fields) -> dict:
    """A versions document with one version: id x, openai, model m, instruction i, then ``fields``."""
    return {"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i", **fields}]}


def test_parse_and_default():
    vs = parse_versions(GOOD)
    assert vs.get(None).id == "b"
    assert vs.get("a").params["temperature"] == 0
    assert vs.get("b").price.output == 5.0
    assert vs.get("b").fields == ["image", "meta"]
    assert len(vs) == 2


def test_versions_are_immutable():
    v = parse_versions(GOOD).get("a")
    with pytest.raises(FrozenInstanceError):
        v.model = "other"
    with pytest.raises(TypeError):
        v.params["temperature"] = 1


def test_fingerprint_changes_with_instruction():
    a = parse_versions(GOOD).get("a")
    doc = {"versions": [dict(GOOD["versions"][0], instruction="Label this: {text}")]}
    assert parse_versions(doc).get("a").fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({}, "non-empty `versions:`"),
        ({"versions": [{"provider": "openai"}]}, "needs an `id`"),
        (one(provider="gemini"), "not one of openai, anthropic, openai-compatible"),
        ({"versions": [{"id": "x", "provider": "openai", "instruction": "i"}]}, "needs a non-empty `model`"),
        (one(colour=1), "unknown keys ['colour']"),
        (one(params={"temprature": 0}),
         "has option 'temprature', which openai does not take (did you mean 'temperature'?); it takes: temperature"),
        (one(provider="anthropic", params={"temperature": 0}),
         "prompts.yaml: version 'x' (anthropic) has option 'temperature', which anthropic does not take; "
         "it takes: max_tokens, stop, timeout, max_retries"),
        (one(params={"max_tokens": "1k"}), "prompts.yaml: version 'x' (openai) has max_tokens: '1k'; it must be an"),
        (one(provider="openai-compatible", params={"top_p": 1.5}), "has top_p: 1.5; it must be a number from 0 to 1"),
        (one(params=[1]), "`params` must be a mapping"),
        (one(instruction="{text"), "not a valid template"),
        (one(price={"input": 1}), "`price` must be"),
        (one(price={"input": -1, "output": 1}), "prices cannot be negative"),
        (dict(one(), default="zz"), "default 'zz' is not one of"),
        ({"versions": one()["versions"] * 2}, "appears twice"),
    ],
)
def test_bad_files_give_actionable_errors(doc, fragment):
    with pytest.raises(VersionError) as err:
        parse_versions(doc, source="prompts.yaml")
    assert fragment in str(err.value)


def test_the_shipped_and_demo_versions_load():
    root = Path(__file__).resolve().parent.parent
    vs = load_versions(str(root / "prompts.example.yaml"))
    assert {v.provider for v in vs} == set(PROVIDERS)
    assert "temperature" not in vs.get("reviews-claude-haiku-v1").params


def test_unknown_version_lists_known_ones():
    with pytest.raises(VersionError, match="defines: a, b"):
        parse_versions(GOOD).get("nope")


def test_load_versions_file_errors(tmp_path):
    with pytest.raises(VersionError, match="not found; set PROMPTS_FILE"):
        load_versions(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("versions: [unclosed")
    with pytest.raises(VersionError, match="not valid YAML"):
        load_versions(str(bad))


def test_default_override_checked(tmp_path):
    import yaml

    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(GOOD))
    assert load_versions(str(p), default="a").default == "a"
    with pytest.raises(VersionError):
        load_versions(str(p), default="missing")


def test_example_file_is_valid():
    vs = load_versions("prompts.example.yaml")
    assert vs.default in vs.versions
    assert {v.provider for v in vs} == {"openai", "anthropic", "openai-compatible"}


def test_settings_mask_secrets_and_validate():
    s = Settings.from_env({"OPENAI_API_KEY": "fake-secret-for-tests", "PREDICT_CONCURRENCY": "4", "LABEL_STUDIO_URL": "http://x:8080/"})
    assert "fake-secret-for-tests" not in repr(s) and "fake-secret-for-tests" in s.secrets()
    assert s.predict_concurrency == 4 and s.label_studio_url == "http://x:8080"
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="PREDICT_CONCURRENCY='many' is not a whole number"):
        Settings.from_env({"PREDICT_CONCURRENCY": "many"})
    with pytest.raises(ConfigError, match="FAILED_TASK_RESULT"):
        Settings.from_env({"FAILED_TASK_RESULT": "drop"})
