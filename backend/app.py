"""The ML backend's HTTP API, as Label Studio 1.23.2 calls it.

Routes (the same contract as ``label-studio-ml`` 2.x, implemented on Flask 3):

``GET /health``    ``{"status": "UP", ...}``; no LLM call (Label Studio waits 1 s).
``POST /setup``    records the project's prompt version from ``extra_params``
                   (``{"version": "<id>"}``; else the default) and checks the
                   label config; replies ``{"model_version": "<version id>"}``.
                   Fast and offline (Label Studio waits 3 s).
``POST /predict``  ``{"tasks": [...], "project": "<id>.<ts>", "label_config": ...}``
                   -> ``{"results": [...]}``, exactly one entry per task.
``POST /webhook``  Label Studio's project webhook.  ``TASKS_CREATED`` enqueues
                   pre-labelling of the new tasks (``backend.jobs.prelabel_tasks``);
                   ground-truth ``ANNOTATION_*`` events enqueue a debounced
                   rescore (``scoring.jobs.rescore_on_annotation``, by dotted
                   path).  Answers at once; never calls an LLM inline.
``GET /versions``  the prompt versions this backend serves (no secrets).

When ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` are set every route requires HTTP
Basic auth (Label Studio sends it on every call once configured).
"""
from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Flask, Response, jsonify, request

from core.errors import ConfigError, Error
from backend.predictor import Predictor
from backend.projects import open_project_versions, project_id
from backend.schema import plan_for
from core.settings import Settings
from backend.versions import VersionSet, load_versions

log = logging.getLogger(__name__)


def parse_extra_params(raw: Any) -> dict:
    """``extra_params`` arrives as a dict, a JSON string, or empty."""
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f'extra params must be JSON such as {{"version": "<id>"}}; got {raw[:80]!r}') from None
        if isinstance(value, dict):
            return value
    raise ConfigError('extra params must be a JSON object such as {"version": "<id>"}')


def create_app(settings: Settings | None = None, versions: VersionSet | None = None, ledger=None, queue=None) -> Flask:
    """Build the WSGI app.  Raises ConfigError at start-up for a bad versions file."""
    settings = settings or Settings.from_env()
    versions = versions or load_versions(settings.prompts_file, settings.default_version)
    if ledger is None:
        from backend.ledger import open_ledger

        ledger = open_ledger(settings)
    if queue is None and settings.redis_url:
        from backend.jobs import JobQueue

        queue = JobQueue(settings)
    project_versions = open_project_versions(settings)
    predictor = Predictor(settings, versions, ledger=ledger)

    app = Flask("llm-prelabel")
    app.config.update(SETTINGS=settings, VERSIONS=versions, PREDICTOR=predictor, LEDGER=ledger, QUEUE=queue)

    @app.before_request
    def _auth():
        if not (settings.basic_auth_user and settings.basic_auth_pass):
            return None
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), settings.basic_auth_user.encode())
            and hmac.compare_digest((auth.password or "").encode(), settings.basic_auth_pass.encode())
        ):
            return None
        return Response(
            json.dumps({"error": "authentication required: set the same Basic Auth user and password on the ML backend in Label Studio"}),
            status=401,
            mimetype="application/json",
            headers={"WWW-Authenticate": 'Basic realm="llm-prelabel"'},
        )

    def version_for(project: str | None) -> str:
        pid = project_id(project)
        vid = project_versions.get(pid) if pid else None
        return versions.get(vid).id  # falls back to the default; raises VersionError if none

    @app.get("/health")
    @app.get("/")
    def health():
        return jsonify({"status": "UP", "model_class": "LLMPrelabel", "versions": len(versions), "default_version": versions.default})

    @app.get("/versions")
    def list_versions():
        return jsonify(
            {
                "default": versions.default,
                "versions": [
                    {"id": v.id, "provider": v.provider, "model": v.model, "fingerprint": v.fingerprint, "description": v.description}
                    for v in versions
                ],
            }
        )

    @app.post("/setup")
    def setup():
        body = request.get_json(silent=True) or {}
        try:
            extra = parse_extra_params(body.get("extra_params"))
            version = versions.get(extra.get("version"))
            if body.get("schema"):
                plan_for(body["schema"])  # a label config we cannot use is reported here, not at predict time
        except ConfigError as exc:
            log.warning("setup refused: %s", exc)
            return jsonify({"error": str(exc)}), 400
        pid = project_id(body.get("project"))
        if pid:
            project_versions.set(pid, version.id)
        return jsonify({"model_version": version.id})

    @app.post("/predict")
    def predict():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            return jsonify({"error": 'expected a JSON body {"tasks": [...], "label_config": "..."}'}), 400
        tasks = body["tasks"]
        if not tasks:
            return jsonify({"results": []})
        label_config = body.get("label_config") or ""
        try:
            vid = version_for(body.get("project"))
            outcomes = predictor.predict(tasks, label_config, vid, project=project_id(body.get("project")))
        except ConfigError as exc:
            log.error("predict refused: %s", exc)
            return jsonify({"error": str(exc)}), 400
        return jsonify({"results": predictor.to_ls_results(outcomes, vid)})

    @app.post("/webhook")
    def webhook():
        event = request.get_json(silent=True) or {}
        action = event.get("action", "")
        pid = project_id((event.get("project") or {}).get("id") if isinstance(event.get("project"), dict) else event.get("project"))
        if queue is None:
            if action == "TASKS_CREATED":
                log.info("TASKS_CREATED ignored: set REDIS_URL and run `python -m scoring worker` to pre-label on import")
            return jsonify({"status": "ok", "queued": None})
        try:
            job_id = queue.handle_event(action, pid, event, version_for(pid))
        except Error as exc:
            log.warning("webhook %s not queued: %s", action, exc)
            return jsonify({"status": "ignored", "reason": str(exc)})
        return jsonify({"status": "ok", "queued": job_id})

    @app.errorhandler(Error)
    def _project_error(exc: Error):
        return jsonify({"error": str(exc)}), 400

    return app
