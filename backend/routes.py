"""The routes of the ML backend (see :mod:`backend.app` for the contract), one method each.

Each route checks its body's shape first and answers 400 ``{"error": ...}`` naming the
field that is wrong (:class:`~backend.http.ApiError`), so no bad input reaches the code
below as a type it does not expect.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from flask import Flask, Response, jsonify

from backend.http import ApiError, json_type, read_json_object
from backend.predictor import Predictor
from backend.projects import project_id
from backend.schema import plan_for
from backend.versions import PromptVersion, VersionSet
from core.errors import ConfigError, Error
from core.settings import Settings

log = logging.getLogger(__name__)

PREDICT_BODY = '{"tasks": [...], "project": "<id>.<ts>", "label_config": "<View>...</View>"}'
SETUP_BODY = '{"project": "<id>.<ts>", "schema": "<View>...</View>", "extra_params": {"version": "<id>"}}'
WEBHOOK_BODY = '{"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": [...]}'
# Webhook fields the queue hand-off reads, and the JSON type each must have when present.
WEBHOOK_FIELDS: dict[str, tuple[type, ...]] = {"tasks": (list,), "annotations": (list,), "annotation": (dict,)}


def parse_extra_params(raw: Any) -> dict:
    """``extra_params`` arrives as a dict, a JSON string, or empty.

    >>> parse_extra_params('{"version": "v2"}'), parse_extra_params(None)
    ({'version': 'v2'}, {})
    """
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise ConfigError(f'extra params must be JSON such as {{"version": "<id>"}}; got {raw[:80]!r}') from None
        if isinstance(value, dict):
            return value
    raise ConfigError('extra params must be a JSON object such as {"version": "<id>"}')


def expect(body: dict, name: str, types: tuple[type, ...], example: str) -> Any:
    """``body[name]`` when it is missing, null or of one of ``types``; else ApiError 400."""
    value = body.get(name)
    if value is None or (isinstance(value, types) and not isinstance(value, bool)):
        return value
    raise ApiError(f"`{name}` must be {example}; got a JSON {json_type(value)}")


def project_of(body: dict) -> str | None:
    """The project id of a body's ``project`` ("12.1700000000", 12, or {"id": 12})."""
    project = expect(body, "project", (str, int, dict), 'a project id such as "12.1700000000"')
    if isinstance(project, dict):
        project = expect(project, "id", (str, int), "a project id")
    return project_id(project)


def openapi_document() -> dict:
    """The backend's OpenAPI description (``backend/openapi.yaml``, shipped as package data)."""
    import yaml

    return yaml.safe_load(resources.files("backend").joinpath("openapi.yaml").read_text(encoding="utf-8"))


@dataclass
class Routes:
    """The route handlers and the services they share (built by :func:`backend.app.create_app`)."""

    settings: Settings
    versions: VersionSet
    predictor: Predictor
    project_versions: Any
    queue: Any = None
    overflow: Any = None   # backend.overflow.Overflow, or None (no queue, or no Label Studio access)
    warnings: dict = field(default_factory=dict)  # shown in /health (e.g. Label Studio access missing)

    def version_for(self, pid: str | None) -> str:
        """The version id a project uses: the one its /setup chose, else the default."""
        vid = self.project_versions.get(pid) if pid else None
        return self.versions.get(vid).id  # falls back to the default; raises VersionError if none

    def blocked_versions(self) -> dict[str, str]:
        """Versions that cannot run here, with the reason (e.g. a provider key not set)."""
        return {v.id: why for v in self.versions if (why := self.predictor.cannot_run(v))}

    # -- GET ------------------------------------------------------------------
    def degraded(self) -> dict[str, str]:
        """Dependencies the backend works around now (Redis down: writes spooled), with what it does."""
        if not self.settings.redis_url:
            return {}
        from core.spool import redis_link

        try:
            problem = redis_link(self.settings).health()
        except Exception as exc:  # /health must answer whatever happens (e.g. the spool file unreadable)
            log.exception("/health could not check Redis and its spool")
            problem = f"could not be checked ({type(exc).__name__}: {exc})"
        return {"redis": problem} if problem else {}

    def health(self) -> Response:
        reply = {"status": "UP", "model_class": "LLMPrelabel", "versions": len(self.versions),
                 "default_version": self.versions.default, "unavailable_versions": self.blocked_versions()}
        degraded = self.degraded()
        if degraded:   # still UP: Label Studio refuses a backend whose health fails
            reply["degraded"] = degraded
        if self.warnings:
            reply["warnings"] = self.warnings
        return jsonify(reply)

    def list_versions(self) -> Response:
        return jsonify({"default": self.versions.default, "versions": [
            {"id": v.id, "provider": v.provider, "model": v.model, "fingerprint": v.fingerprint,
             "description": v.description}
            for v in self.versions
        ]})

    def openapi(self) -> Response:
        return jsonify(openapi_document())

    # -- POST -----------------------------------------------------------------
    def setup(self) -> Response:
        body = read_json_object(SETUP_BODY)
        pid = project_of(body)
        version = self._setup_version(body)
        schema = expect(body, "schema", (str,), "the project's label config as a string")
        if schema:
            plan_for(schema)  # a label config we cannot use is reported here, not at predict time
        problem = self.predictor.cannot_run(version)
        if problem:
            raise ApiError(f"prompt version {version.id!r} cannot run: {problem}")
        if pid:
            self.project_versions.set(pid, version.id)
        return jsonify({"model_version": version.id})

    def _setup_version(self, body: dict) -> PromptVersion:
        extra = parse_extra_params(body.get("extra_params"))
        vid = expect(extra, "version", (str,), 'a prompt version id such as "reviews-v1"')
        return self.versions.get(vid)

    def predict(self) -> Response:
        body = read_json_object(PREDICT_BODY)
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise ApiError(f"`tasks` must be a JSON array of tasks; got a JSON {json_type(tasks)}")
        pid = project_of(body)
        label_config = expect(body, "label_config", (str,), "the project's label config as a string") or ""
        if not tasks:
            return jsonify({"results": []})
        vid = self.version_for(pid)
        if self.overflow is None:
            outcomes = self.predictor.predict(tasks, label_config, vid, project=pid)
            return jsonify({"results": self.predictor.to_ls_results(outcomes, vid)})
        return jsonify({"results": self._predict_with_overflow(tasks, label_config, vid, pid)})

    def _predict_with_overflow(self, tasks: list, label_config: str, vid: str, pid: str | None) -> list:
        """Tasks an overflow run holds get ``[]`` (no call); those past the deadline are handed off."""
        from backend.overflow import task_id

        held = self.overflow.held(pid, vid, tasks)
        todo = [i for i, t in enumerate(tasks) if task_id(t) not in held]
        outcomes = self.predictor.predict([tasks[i] for i in todo], label_config, vid, project=pid) if todo else []
        late = [{"id": tasks[i]["id"], "data": tasks[i].get("data") or {}} for i, o in zip(todo, outcomes, strict=True)
                if o.status == "deadline" and task_id(tasks[i]) is not None]
        if late:
            self.overflow.hand_off(pid, vid, late)
        results: list = [[] for _ in tasks]
        for i, answer in zip(todo, self.predictor.to_ls_results(outcomes, vid), strict=True):
            results[i] = answer
        return results

    def webhook(self) -> Response:
        event = read_json_object(WEBHOOK_BODY)
        action = expect(event, "action", (str,), 'an event name such as "TASKS_CREATED"') or ""
        pid = project_of(event)
        for name, types in WEBHOOK_FIELDS.items():
            expect(event, name, types, "a JSON " + ("array" if types == (list,) else "object"))
        if self.queue is None:
            if action == "TASKS_CREATED":
                log.info("TASKS_CREATED ignored: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY in the backend "
                         "(embedded mode), or REDIS_URL and run `python -m scoring worker`, to pre-label on import")
            return jsonify({"status": "ok", "queued": None})
        try:
            done = self.queue.submit(action, pid, event, self.version_for(pid))
        except Error as exc:
            log.warning("webhook %s not queued: %s", action, exc)
            return jsonify({"status": "ignored", "reason": str(exc)})
        if done.spooled:
            log.warning("webhook %s kept for later: %s", action, done.spooled)
            return jsonify({"status": "ok", "queued": None, "spooled": done.spooled})
        return jsonify({"status": "ok", "queued": done.job_id})


def register_routes(app: Flask, routes: Routes) -> None:
    """Attach the handlers to ``app``."""
    app.add_url_rule("/health", "health", routes.health, methods=["GET"])
    app.add_url_rule("/", "root", routes.health, methods=["GET"])
    app.add_url_rule("/versions", "versions", routes.list_versions, methods=["GET"])
    app.add_url_rule("/openapi.json", "openapi", routes.openapi, methods=["GET"])
    app.add_url_rule("/setup", "setup", routes.setup, methods=["POST"])
    app.add_url_rule("/predict", "predict", routes.predict, methods=["POST"])
    app.add_url_rule("/webhook", "webhook", routes.webhook, methods=["POST"])
