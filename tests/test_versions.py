"""Prompt versions file: parsing, validation messages, defaults."""
import pytest

from core.errors import VersionError
from core.settings import Settings
from backend.versions import load_versions, parse_versions

GOOD = {
    "default": "b",
    "versions": [
        {"id": "a", "provider": "openai", "model": "gpt-4o-mini", "instruction": "Label {text}", "params": {"temperature": 0}},
        {"id": "b", "provider": "anthropic", "model": "claude-haiku-4-5", "instruction": "See {image} and {meta}", "price": {"input": 1, "output": 5}},
    ],
}


def test_parse_and_default():
    vs = parse_versions(GOOD)
    assert vs.get(None).id == "b"
    assert vs.get("a").params["temperature"] == 0
    assert vs.get("b").price.output == 5.0
    assert vs.get("b").fields == ["image", "meta"]
    assert len(vs) == 2


def test_versions_are_immutable():
    v = parse_versions(GOOD).get("a")
    with pytest.raises(Exception):
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
        ({"versions": [{"id": "x", "provider": "gemini", "model": "m", "instruction": "i"}]}, "not one of openai, anthropic, openai-compatible"),
        ({"versions": [{"id": "x", "provider": "openai", "instruction": "i"}]}, "needs a non-empty `model`"),
        ({"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i", "colour": 1}]}, "unknown keys ['colour']"),
        ({"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i", "params": {"temprature": 0}}]}, "unknown params ['temprature']"),
        ({"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "{text"}]}, "not a valid template"),
        ({"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i", "price": {"input": 1}}]}, "`price` must be"),
        ({"default": "zz", "versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i"}]}, "default 'zz' is not one of"),
        ({"versions": [{"id": "x", "provider": "openai", "model": "m", "instruction": "i"}] * 2}, "appears twice"),
    ],
)
def test_bad_files_give_actionable_errors(doc, fragment):
    with pytest.raises(VersionError) as err:
        parse_versions(doc, source="prompts.yaml")
    assert fragment in str(err.value)


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
