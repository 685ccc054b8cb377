"""The ML backend's HTTP API, as Label Studio 1.23.2 calls it.

Routes (the same contract as ``label-studio-ml`` 2.x, implemented on Flask 3; the full
description is ``backend/openapi.yaml``, served at ``GET /openapi.json``):

``GET /health``    ``{"status": "UP", ...}``; no LLM call (Label Studio waits 1 s).
                   ``unavailable_versions`` names the versions that cannot run here and
                   why (e.g. ``OPENAI_API_KEY`` not set); the backend stays UP.
``POST /setup``    records the project's prompt version from ``extra_params``
                   (``{"version": "<id>"}``; else the default) and checks the
                   label config; replies ``{"model_version": "<version id>"}``,
                   or 400 when the version cannot run (its provider key is not set).
                   Fast and offline (Label Studio waits 3 s).
``POST /predict``  ``{"tasks": [...], "project": "<id>.<ts>", "label_config": ...}``
                   -> ``{"results": [...]}``, exactly one entry per task (a task that is
                   not a JSON object gets ``[]`` and a ledger record saying why).  Tasks
                   past ``PREDICT_DEADLINE`` get ``[]`` and are handed to an overflow run
                   that writes them into Label Studio later (``backend.overflow``).
``POST /webhook``  Label Studio's project webhook.  ``TASKS_CREATED`` enqueues
                   pre-labelling of the new tasks (``backend.jobs.prelabel_tasks`` on RQ
                   with ``REDIS_URL``; without it a run on the embedded queue,
                   ``backend.embedded``);
                   ground-truth ``ANNOTATION_*`` events enqueue a debounced
                   rescore (``scoring.jobs.rescore_on_annotation``, by dotted
                   path).  Answers at once; never calls an LLM inline.
``GET /versions``  the prompt versions this backend serves (no secrets).
``GET /openapi.json``  the OpenAPI 3.0 description of these routes.

Bad input is answered ``4xx {"error": "<message>"}``, never a 500 (see
:mod:`backend.http`): a body that is not JSON or nests too deeply -> 400; a body over
``MAX_REQUEST_MB`` (``/predict``, ``/webhook``) or ``MAX_SETUP_MB`` (``/setup``) -> 413.

When ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` are set every route requires HTTP
Basic auth (Label Studio sends it on every call once configured).
"""
from __future__ import annotations

from typing import Any

from flask import Flask

from backend.http import install_auth, install_error_handlers, install_limits
from backend.predictor import Predictor
from backend.projects import open_project_versions
from backend.routes import Routes, parse_extra_params, register_routes
from backend.versions import VersionSet, load_versions
from core.settings import Settings

__all__ = ["create_app", "build_routes", "parse_extra_params"]


def build_routes(settings: Settings, versions: VersionSet, ledger: Any = None, queue: Any = None) -> Routes:
    """The services the routes share: ledger, job queue (with ``REDIS_URL``), project map, predictor."""
    if ledger is None:
        from backend.ledger import open_ledger

        ledger = open_ledger(settings)
    warnings: dict[str, str] = {}
    if queue is None and settings.redis_url:
        from backend.jobs import JobQueue

        queue = JobQueue(settings)
    elif queue is None:
        from backend.embedded import build_embedded, missing_label_studio

        queue = build_embedded(settings)
        if queue is None:
            warnings["label_studio"] = missing_label_studio(settings) or ""
    predictor = Predictor(settings, versions, ledger=ledger)
    routes = Routes(settings, versions, predictor, open_project_versions(settings), queue, warnings=warnings)
    routes.overflow = build_overflow(queue)
    return routes


def build_overflow(queue: Any):
    """The ``/predict`` overflow hand-off onto ``queue`` (RQ or embedded); None without a queue that runs."""
    if queue is None or not hasattr(queue, "start_run"):
        return None
    from backend.overflow import Overflow

    if getattr(queue, "mode", None) == "embedded":
        return Overflow(queue.store, queue)
    from backend.runstore import RedisRunStore

    return Overflow(RedisRunStore(queue.connection, queue.queue.name), queue)


def create_app(settings: Settings | None = None, versions: VersionSet | None = None, ledger=None, queue=None) -> Flask:
    """Build the WSGI app.  Raises ConfigError at start-up for a bad versions file."""
    settings = settings or Settings.from_env()
    versions = versions or load_versions(settings.prompts_file, settings.default_version)
    routes = build_routes(settings, versions, ledger, queue)
    app = Flask("llm-prelabel")
    app.config.update(SETTINGS=settings, VERSIONS=versions, PREDICTOR=routes.predictor,
                      LEDGER=routes.predictor.ledger, QUEUE=routes.queue, ROUTES=routes)
    install_limits(app, settings)
    install_auth(app, settings)
    install_error_handlers(app)
    register_routes(app, routes)
    return app
