"""The HTTP plumbing of the ML backend: JSON bodies, size limits, auth and error replies.

Every error reply is ``{"error": "<one message a user can act on>"}`` with a 4xx status
for bad input (a 500 only for a bug, logged with its traceback, never shown).

* :func:`read_json` parses a request body robustly: not JSON, not UTF-8, nested deeper
  than :data:`MAX_JSON_DEPTH` (a 100,000-deep body used to raise ``RecursionError``) ->
  :class:`ApiError` 400;
* :func:`install_limits` caps the body size per route (``MAX_REQUEST_MB`` for ``/predict``
  and ``/webhook``, ``MAX_SETUP_MB`` for ``/setup``) -> 413;
* :func:`install_auth` requires HTTP Basic auth when ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` are set;
* :func:`install_error_handlers` turns :class:`ApiError`, ``core.errors.Error``, any
  ``HTTPException`` (404, 405, 413, ...) and any other exception into a JSON reply.
"""
from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from core.errors import Error
from core.settings import Settings

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 100  # levels of nested arrays/objects a request body may have


class ApiError(Exception):
    """A request the backend refuses: ``status`` (4xx) and a message for the user."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def reason_phrase(message: str, limit: int = 300) -> str:
    """``message`` as an HTTP reason phrase: printable ASCII on one line, at most ``limit`` characters.

    Label Studio 1.23.2 shows a failed ``/setup`` only as requests' ``"400 Client Error: <reason>
    for url ..."``, never the body, so the reason phrase carries the message to its UI.

    >>> reason_phrase("unknown prompt version 'x'; prompts.yaml defines: a, b")
    "unknown prompt version 'x'; prompts.yaml defines: a, b"
    >>> reason_phrase("line one" + chr(10) + "line " + chr(8220) + "two" + chr(8221))
    'line one line ?two?'
    """
    text = " ".join(message.split())
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return text[: limit - 3] + "..." if len(text) > limit else text


def error_reply(message: str, status: int, headers: dict | None = None) -> Response:
    """The one shape of every error reply: ``{"error": message}``, the message also as the reason phrase."""
    reply = jsonify({"error": message})
    reply.status = f"{status} {reason_phrase(message) or 'error'}"
    for name, value in (headers or {}).items():
        reply.headers[name] = value
    return reply


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (level by level: no recursion limit).

    >>> json_depth(1), json_depth([]), json_depth({"a": [1, {"b": []}]})
    (0, 1, 4)
    """
    deepest, level = 0, [value]
    while True:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return deepest
        deepest += 1
        level = []
        for item in containers:
            level.extend(item.values() if isinstance(item, dict) else item)


def read_json(what: str) -> Any:
    """The request body parsed as JSON; :class:`ApiError` 400 when it cannot be.

    ``what`` describes the expected body for the message, e.g. ``'{"tasks": [...]}'``.
    """
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge past the route's limit
    if not raw.strip():
        raise ApiError(f"empty request body; send a JSON object {what}")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(f"the JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(f"the request body is not valid JSON ({exc}); send a JSON object {what}") from None
    if json_depth(body) > MAX_JSON_DEPTH:
        raise ApiError(f"the JSON body is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return body


def read_json_object(what: str) -> dict:
    """:func:`read_json`, and the body must be a JSON object."""
    body = read_json(what)
    if not isinstance(body, dict):
        raise ApiError(f"expected a JSON object {what}; got a JSON {json_type(body)}")
    return body


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages.

    >>> json_type([1]), json_type(None), json_type(True), json_type(2.5)
    ('array', 'null', 'boolean', 'number')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def route_limits(settings: Settings) -> dict[str, int]:
    """Largest body in bytes per route (``request.path``).

    >>> route_limits(Settings(max_request_mb=20, max_setup_mb=0.5))["/setup"]
    524288
    """
    big, small = int(settings.max_request_mb * 2**20), int(settings.max_setup_mb * 2**20)
    return {"/predict": big, "/webhook": big, "/setup": small}


def install_limits(app: Flask, settings: Settings) -> None:
    """Cap each route's body size; anything else (GET routes) may send at most 64 KiB."""
    limits = route_limits(settings)
    setting = {"/predict": "MAX_REQUEST_MB", "/webhook": "MAX_REQUEST_MB", "/setup": "MAX_SETUP_MB"}

    @app.before_request
    def _limit() -> None:
        request.max_content_length = limits.get(request.path, 64 * 1024)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Response:
        limit = request.max_content_length or 0
        name = setting.get(request.path)
        fix = f"; raise {name} on the ML backend to accept more" if name else ""
        log.warning("%s refused: body larger than %d bytes", request.path, limit)
        return error_reply(f"request body too large for {request.path}: more than {limit / 2**20:g} MB{fix}", 413)


def _credentials_ok(settings: Settings) -> bool:
    auth = request.authorization
    return (
        auth is not None
        and auth.type == "basic"
        and hmac.compare_digest((auth.username or "").encode(), (settings.basic_auth_user or "").encode())
        and hmac.compare_digest((auth.password or "").encode(), (settings.basic_auth_pass or "").encode())
    )


def install_auth(app: Flask, settings: Settings) -> None:
    """Require HTTP Basic auth on every route when both ``BASIC_AUTH_*`` settings are set."""
    if not (settings.basic_auth_user and settings.basic_auth_pass):
        return

    @app.before_request
    def _auth() -> Response | None:
        if _credentials_ok(settings):
            return None
        return error_reply(
            "authentication required: set the same Basic Auth user and password on the ML backend in Label Studio",
            401, headers={"WWW-Authenticate": 'Basic realm="llm-prelabel"'},
        )


def install_error_handlers(app: Flask) -> None:
    """JSON replies for every error; a 500 only for a bug, logged with its traceback."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        log.warning("%s %s refused: %s", request.method, request.path, exc)
        return error_reply(str(exc), exc.status)

    @app.errorhandler(Error)
    def _project_error(exc: Error) -> Response:
        log.warning("%s %s refused: %s", request.method, request.path, exc)
        return error_reply(str(exc), 400)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        reply = error_reply(f"{exc.code} {exc.name}: {exc.description}", exc.code or 500)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            reply.headers["Allow"] = ", ".join(exc.valid_methods)
        return reply

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("%s %s: unexpected error", request.method, request.path)
        return error_reply(f"internal error ({type(exc).__name__}); the ML backend's log has the details", 500)
