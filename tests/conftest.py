"""Shared pytest fixtures (fixtures only; add yours below)."""
from __future__ import annotations

import pytest

from fakellm import FakeLLM

pytest_plugins = ["tests.lsharness"]  # the real-Label-Studio fixture `label_studio`


@pytest.fixture
def fake_llm():
    """A stand-in LLM server on a free 127.0.0.1 port for one test.

    Yields a :class:`fakellm.FakeLLM` with ``.url``, ``.openai_base_url``,
    ``.anthropic_base_url``, ``.requests``, ``.options`` and ``.set_answers(...)``.
    """
    with FakeLLM() as fake:
        yield fake
