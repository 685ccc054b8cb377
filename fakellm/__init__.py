"""The stand-in LLM server - a TEST DOUBLE, not a model (see README.md in this folder).

It speaks the OpenAI Chat Completions and Anthropic Messages wire formats well enough for
the official SDKs, answers deterministically from a pluggable answer source and injects
latency and faults.  In tests use the ``fake_llm`` fixture (tests/conftest.py); standalone::

    python -m fakellm --host 127.0.0.1 --port 8765 [--answers pkg.module:factory]
"""
from fakellm.answers import (
    AnswerSource,
    RequestInfo,
    SchemaAnswer,
    TableAnswer,
    load_answer_source,
    quote_from,
    task_text,
    worsen,
)
from fakellm.server import FakeLLM, Options, count_tokens

__all__ = [
    "FakeLLM", "Options", "AnswerSource", "RequestInfo", "SchemaAnswer", "TableAnswer",
    "load_answer_source", "quote_from", "task_text", "worsen", "count_tokens",
]
