"""Property-based fuzzing of every route of the ML backend from its OpenAPI description.

Schemathesis reads ``GET /openapi.json`` from the app (in-process WSGI) and generates
requests for every operation, in both modes: *positive* (bodies the description allows)
and *negative* (bodies it does not).  Every reply must be: not a 500, JSON, a documented
status code matching its response schema, and an error reply must be ``{"error": "..."}``.
Every ``/predict`` body is also sent again with a real label config, and must then get
exactly one result per task.  The provider calls go to the stand-in LLM (``fake_llm``);
nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fakellm.dataset import LABEL_CONFIG
from tests.test_app import make_client  # noqa: F401  (the fixture)

EXAMPLES = 50  # per operation and generation mode (negative: POST routes, the ones with a body)
OPERATIONS = [("/health", "GET"), ("/versions", "GET"), ("/openapi.json", "GET"), ("/setup", "POST"),
              ("/predict", "POST"), ("/webhook", "POST")]
CHECKS = [not_a_server_error, content_type_conformance, status_code_conformance, response_schema_conformance]


@pytest.fixture
def app(request):
    """The backend (three versions, keys set) talking to the stand-in LLM: tests/test_app.py's client."""
    client = request.getfixturevalue("make_client")(provider_max_retries=0, predict_concurrency=4)
    return client.application


def check_reply(response, tally: collections.Counter) -> None:
    """The properties every reply has, whatever the request."""
    tally["500s"] += response.status_code >= 500
    assert response.status_code < 500, response.text[:300]
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    body = response.json()
    if response.status_code >= 400:
        assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body


def check_one_result_per_task(case, tally: collections.Counter) -> None:
    """``/predict`` with the body made usable (a real label config) answers one entry per task."""
    if not isinstance(case.body, dict) or not isinstance(case.body.get("tasks"), list):
        return
    case.body = dict(case.body, label_config=LABEL_CONFIG)
    response = case.call()
    tally["predict re-sent"] += 1
    check_reply(response, tally)
    if response.status_code == 200:
        tally["predict batches answered"] += 1
        tally["tasks answered"] += len(case.body["tasks"])
        assert len(response.json()["results"]) == len(case.body["tasks"])


def fuzz(operation, mode, tally: collections.Counter) -> None:
    """Send ``EXAMPLES`` generated requests of one operation and check every reply."""

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call()
        tally["examples"] += 1
        check_reply(response, tally)
        case.validate_response(response, checks=CHECKS)
        if case.operation.path == "/predict":
            check_one_result_per_task(case, tally)

    run()


def test_fuzz_every_route(app, fake_llm):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    tally: collections.Counter = collections.Counter()
    per_operation: dict[str, int] = {}
    for path, method in OPERATIONS:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if method == "POST":  # a GET without parameters has nothing to send wrong
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            before = tally["examples"]
            fuzz(schema[path][method], mode, tally)
            per_operation[f"{method} {path} {mode.value}"] = tally["examples"] - before
    print(f"\nfuzzed {tally['examples']} requests over {len(OPERATIONS)} operations "
          f"({', '.join(f'{k}: {v}' for k, v in per_operation.items())}); "
          f"500s: {tally['500s']}; /predict bodies re-sent with a real label config: {tally['predict re-sent']}, "
          f"answered one entry per task: {tally['predict batches answered']} ({tally['tasks answered']} tasks); "
          f"stand-in LLM calls: {len(fake_llm.requests)}")
    assert tally["500s"] == 0
    assert tally["predict batches answered"] > 0  # the one-result-per-task property was exercised
    assert all(n > 0 for n in per_operation.values())
