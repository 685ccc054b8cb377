"""Secret masking: ``core.secrets.mask`` and the log filter every entry point installs."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from core.secrets import SecretFilter, install_log_filter, mask, uninstall_log_filter
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-0123456789abcdef"
LS_TOKEN = "ls-token-abcdef0123456789"
SETTINGS = Settings(openai_api_key=KEY, label_studio_api_key=LS_TOKEN, basic_auth_pass="hunter2-password")


@pytest.fixture
def captured():
    """Install the filter, and capture what a handler on the root logger prints."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_log_filter(SETTINGS)
    try:
        yield stream
    finally:
        uninstall_log_filter()
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_mask_replaces_every_secret_longest_first():
    assert mask(f"key={KEY} short={KEY[:6]}", [KEY[:6], None, "", KEY]) == "key=*** short=***"
    assert mask("nothing here", SETTINGS.secrets()) == "nothing here"


@pytest.mark.parametrize("logger_name", ["llm_prelabel.test", "httpx", "label_studio_sdk", "rq.worker"])
def test_message_args_and_exception_text_are_masked_for_every_logger(captured, logger_name):
    log = logging.getLogger(logger_name)
    old_level = log.level
    log.setLevel(logging.INFO)  # other code (e.g. the run command) quiets httpx in this process
    try:
        _log_secrets(log)
    finally:
        log.setLevel(old_level)
    out = captured.getvalue()
    assert "calling with key *** and token ***" in out
    assert "RuntimeError: 401 for Authorization: Token *** (basic auth ***)" in out
    assert "Traceback" in out
    assert KEY not in out and LS_TOKEN not in out and "hunter2-password" not in out


def _log_secrets(log):
    log.info("calling with key %s and token %s", KEY, LS_TOKEN)
    try:
        raise RuntimeError(f"401 for Authorization: Token {LS_TOKEN} (basic auth hunter2-password)")
    except RuntimeError:
        log.exception("request failed")


def test_a_handler_added_later_on_a_non_propagating_logger_is_masked_too(captured):
    """RQ's worker adds its own handler to its logger; the record factory covers it as well."""
    stream = io.StringIO()
    log = logging.getLogger("test.secrets.own-handler")
    log.propagate = False
    log.addHandler(logging.StreamHandler(stream))
    log.setLevel(logging.INFO)
    try:
        log.warning("%s", {"api_key": KEY})
    finally:
        log.handlers.clear()
        log.propagate = True
    assert stream.getvalue().strip() == "{'api_key': '***'}"


def test_install_twice_replaces_the_secrets(captured):
    install_log_filter(Settings(anthropic_api_key="sk-ant-second-key"))
    logging.getLogger("anthropic").warning("keys %s %s", KEY, "sk-ant-second-key")
    assert "keys " + KEY + " ***" in captured.getvalue()


def test_filter_keeps_a_record_whose_format_is_broken():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    assert SecretFilter([KEY]).filter(record) is True


ENTRY_POINTS = {
    # each fails fast with a configuration error, after installing the filter
    "backend": "from backend.__main__ import main; main(['--prompts', '/nonexistent/prompts.yaml'])",
    "scoring": "from scoring.cli import main; main(['worker', '--burst'])",
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_points_install_the_filter(entry):
    """``python -m backend`` and ``python -m scoring`` mask the key in a third-party logger's record."""
    code = (f"import logging, sys; {ENTRY_POINTS[entry]}; "
            "log = logging.getLogger('httpx'); log.addHandler(logging.StreamHandler(sys.stdout)); "
            f"log.propagate = False; log.warning('token %s', {KEY!r})")
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": KEY, "REDIS_URL": ""}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "token ***"
