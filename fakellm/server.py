"""The stand-in LLM server: a test double speaking OpenAI Chat Completions and Anthropic Messages.

It is *not* a model.  It answers deterministically from a pluggable answer source (see
:mod:`fakellm.answers`) and can inject latency and faults, so the official ``openai``
and ``anthropic`` SDKs can be exercised over real HTTP without network or keys.

Routes: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``POST /v1/messages``,
``GET /v1/models``, ``GET /health``.  Requests without ``Authorization: Bearer ...`` or
``x-api-key`` get 401 (and, when ``options.api_keys`` is set, keys outside it do too).

Faults, per request, by a marker anywhere in the system or user text:

=========================  ==============================================================
``[[fault:429]]``          429 with ``Retry-After`` (``options.retry_after``, default 0) the
                           first N times this same request is seen, then a normal answer.
                           N is ``options.fault_times`` (default 1); ``[[fault:429:3]]`` sets
                           it, ``[[fault:429:always]]`` never recovers.  Any 4xx/5xx code works
                           the same way (``[[fault:500]]``, ``[[fault:503:always]]``).
``[[fault:timeout]]``      sleep ``options.timeout_s`` (default 30 s; ``[[fault:timeout:2]]``:
                           2 s) before answering, i.e. past the client's timeout.
``[[fault:malformed]]``    the answer text is not valid JSON.
``[[fault:truncated]]``    the JSON is cut in half; finish_reason ``length`` / stop_reason
                           ``max_tokens``.  (A ``max_tokens`` smaller than the answer does the
                           same, naturally.)
``[[fault:refusal]]``      OpenAI ``message.refusal``; Anthropic ``stop_reason: "refusal"``.
``[[fault:bare]]``         OpenAI API: the fewest fields a compatible server may send (no
                           ``usage``, no ``refusal``/``logprobs`` keys), as some local servers do.
``[[fault:nochoices]]``    OpenAI API: ``"choices": []``.
=========================  ==============================================================

Server-wide: ``options.rpm_limit`` (429 with ``Retry-After`` above that many requests per
``options.rate_window_s`` seconds, a moving window; 429s are not counted), ``options.latency_ms``
(added to every answer), ``options.fault_rate`` (that share
of requests gets a fault drawn from ``options.fault_kinds`` by a seeded RNG), ``options.json_schema``
(False: reject ``response_format`` json_schema with 400 like some OpenAI-compatible servers),
``options.json_object`` (False: the same for ``json_object``),
``options.output_config`` (False: reject Anthropic ``output_config`` with 400 like older models).

Tokens are counted deterministically: ceil(characters / 4) of all text, plus 85 per image.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from fakellm.answers import AnswerSource, RequestInfo, SchemaAnswer
from fakellm.logprobs import serialize, token_logprobs
from fakellm.noisy import ScoredAnswer
from fakellm.ratelimit import MovingWindow

MARKER = re.compile(r"\[\[fault:([a-z0-9]+)(?::([a-z0-9.]+))?\]\]")
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
IMAGE_TOKENS = 85


@dataclass
class Options:
    """Server-wide behaviour; change fields at any time (``fake.options.latency_ms = 50``)."""

    latency_ms: int = 0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("500",)
    seed: int = 0
    fault_times: int = 1          # how many times [[fault:<code>]] fails before answering
    retry_after: float = 0.0      # seconds, sent as Retry-After (and retry-after-ms) with 429
    timeout_s: float = 30.0       # how long [[fault:timeout]] sleeps
    api_keys: frozenset[str] | None = None  # accepted keys; None = any non-empty key
    json_schema: bool = True      # OpenAI: accept response_format json_schema
    json_object: bool = True      # OpenAI: accept response_format json_object
    output_config: bool = True    # Anthropic: accept output_config
    rpm_limit: int = 0            # > 0: 429 above this many requests per rate_window_s (a moving window)
    rate_window_s: float = 60.0   # the window of rpm_limit, seconds


def count_tokens(text: str) -> int:
    """Deterministic token count: ``ceil(len(text) / 4)``, e.g. ``count_tokens("abcde") == 2``."""
    return math.ceil(len(text) / 4)


def _text_of(content: Any) -> tuple[list[str], list[str]]:
    """(texts, images) of an OpenAI or Anthropic message content (a string or a list of parts)."""
    if isinstance(content, str):
        return [content], []
    texts, images = [], []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = part.get("image_url")
            images.append(url.get("url", "") if isinstance(url, dict) else str(url))
        elif kind == "image":
            src = part.get("source") or {}
            if src.get("type") == "url":
                images.append(src.get("url", ""))
            else:
                images.append(f"data:{src.get('media_type', '')};base64,{src.get('data', '')}")
    return texts, images


_SCHEMA_BLOCK = re.compile(r"```json\s*\n(.*?)\n```", re.S)


def schema_from_text(text: str) -> dict | None:
    """A JSON schema given inline in a prompt (a ```json block), for requests without a schema field."""
    for m in _SCHEMA_BLOCK.finditer(text):
        try:
            doc = json.loads(m.group(1))
        except ValueError:
            continue
        if isinstance(doc, dict) and ("properties" in doc or "type" in doc):
            return doc
    return None


class HTTPFault(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


class FakeLLM:
    """The stand-in server.  Use as a context manager or ``start()``/``stop()``::

        with FakeLLM() as fake:
            client = openai.OpenAI(api_key="test", base_url=fake.openai_base_url)

    ``fake.requests`` logs every request (api, path, model, body, status, fault, arrival time ``t``;
    auth headers masked); ``fake.max_in_flight`` is the most requests it handled at once.
    ``fake.set_answers(source)`` swaps the answer source.
    """

    def __init__(self, answers: AnswerSource | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 **options: Any):
        self.answers: AnswerSource = answers or SchemaAnswer()
        self.options = Options(**options)
        self.host, self.port = host, port
        self.requests: list[dict] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._rng = random.Random(self.options.seed)
        self._window = MovingWindow()
        self.in_flight = self.max_in_flight = 0
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app = self._make_app()

    # --- lifecycle ----------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def _bind(self) -> BaseWSGIServer:
        """Listen on ``host:port`` (port 0 = a free port, then recorded in ``self.port``)."""
        self._server = server = make_server(self.host, self.port, self.app, threaded=True,
                                            request_handler=_QuietHandler)
        self.port = server.server_port
        return server

    def start(self) -> "FakeLLM":
        """Bind (port 0 = a free port) and serve in a daemon thread."""
        self._stopping.clear()
        server = self._bind()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"fakellm:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; sleeping ``[[fault:timeout]]`` handlers wake up and finish."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_answers(self, source: AnswerSource) -> None:
        """Answer from ``source`` from now on."""
        self.answers = source

    def reset(self) -> None:
        """Forget logged requests and fault counters; restore default options and SchemaAnswer."""
        with self._lock:
            self.requests.clear()
            self._seen.clear()
            self.options = Options()
            self._rng = random.Random(self.options.seed)
            self._window.clear()
            self.max_in_flight = 0
            self.answers = SchemaAnswer()

    def serve_forever(self, ready=None) -> None:
        """Serve in the calling thread until interrupted (the CLI); ``ready(url)`` is called once bound."""
        server = self._bind()
        if ready is not None:
            ready(self.url)
        try:
            server.serve_forever()
        finally:
            self._stopping.set()
            server.server_close()

    # --- HTTP -----------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("fakellm")

        @app.get("/health")
        def health():
            return {"status": "ok", "fake": True}

        @app.get("/v1/models")
        def models():
            return {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fakellm"}]}

        @app.post("/v1/chat/completions")
        @app.post("/chat/completions")
        def chat():
            return self._handle("openai")

        @app.post("/v1/messages")
        def messages():
            return self._handle("anthropic")

        return app

    def _log(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def _handle(self, api: str) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._handle_one(api)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _rate_limit(self, api: str) -> None:
        """429 with Retry-After when ``options.rpm_limit`` requests arrived within the window."""
        wait = self._window.admit(self.options.rpm_limit, self.options.rate_window_s)
        if wait is not None:
            headers = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000))}
            raise HTTPFault(429, "rate_limit_error" if api == "anthropic" else "rate_limit_exceeded",
                            f"Rate limit reached: {self.options.rpm_limit} requests per "
                            f"{self.options.rate_window_s:g} s (fake).", headers)

    def _handle_one(self, api: str) -> Response:
        n = next(self._ids)
        request_id = f"req_fake{n:08d}"
        headers = {k.lower(): v for k, v in request.headers.items()}
        for secret in ("authorization", "x-api-key"):
            if secret in headers:
                headers[secret] = "***"
        body = request.get_json(silent=True)
        entry = {"api": api, "path": request.path, "model": None, "headers": headers, "body": body,
                 "status": None, "fault": None, "t": time.time()}
        try:
            self._check_auth(api)
            if self.options.rpm_limit:
                self._rate_limit(api)
            if not isinstance(body, dict):
                raise HTTPFault(400, "invalid_request_error", "the request body must be a JSON object")
            entry["model"] = body.get("model")
            info = self._parse(api, body)
            fault = self._fault(api, info)
            entry["fault"] = fault
            if self.options.latency_ms:
                self._stopping.wait(self.options.latency_ms / 1000)
            payload = self._answer(api, info, fault, request_id, body)
            entry["status"] = 200
            self._log(entry)
            return self._json(payload, 200, api, request_id)
        except HTTPFault as f:
            entry["status"] = f.status
            entry["fault"] = entry["fault"] or f.kind
            entry["retry_after_ms"] = f.headers.get("retry-after-ms")
            self._log(entry)
            err: dict[str, Any]
            if api == "openai":
                err = {"error": {"message": f.message, "type": f.kind, "param": None, "code": f.kind}}
            else:
                err = {"type": "error", "error": {"type": f.kind, "message": f.message}, "request_id": request_id}
            return self._json(err, f.status, api, request_id, f.headers)

    @staticmethod
    def _json(payload: Any, status: int, api: str, request_id: str, extra: dict | None = None) -> Response:
        resp = Response(json.dumps(payload), status=status, mimetype="application/json")
        resp.headers["x-request-id" if api == "openai" else "request-id"] = request_id
        if api == "openai":
            resp.headers["openai-processing-ms"] = "1"
        for k, v in (extra or {}).items():
            resp.headers[k] = v
        return resp

    def _check_auth(self, api: str) -> None:
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not key:
            raise HTTPFault(401, "authentication_error",
                            "You didn't provide an API key (Authorization: Bearer ... or x-api-key).")
        allowed = self.options.api_keys
        if allowed is not None and key not in allowed:
            masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"
            raise HTTPFault(401, "authentication_error" if api == "anthropic" else "invalid_api_key",
                            f"Incorrect API key provided: {masked}.")

    def _parse(self, api: str, body: dict) -> RequestInfo:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HTTPFault(400, "invalid_request_error", "model: field required")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise HTTPFault(400, "invalid_request_error", "messages: at least one message is required")
        parse = self._parse_openai if api == "openai" else self._parse_anthropic
        system_texts, user_texts, images, schema = parse(body, msgs)
        system, user = "\n\n".join(system_texts), "\n\n".join(user_texts)
        if schema is None:
            schema = schema_from_text(system)
        return RequestInfo(api=api, model=model, system=system, user=user, schema=schema, images=images, body=body)

    def _parse_openai(self, body: dict, msgs: list) -> tuple[list, list, list, Any]:
        """System texts, user texts, images and the response schema (or None) of a chat completion."""
        system_texts: list = []
        user_texts: list = []
        images: list = []
        schema = None
        for m in msgs:
            texts, imgs = _text_of(m.get("content"))
            (system_texts if m.get("role") in ("system", "developer") else user_texts).extend(texts)
            images.extend(imgs)
        rf = body.get("response_format") or {}
        if rf.get("type") in ("json_schema", "json_object") and not getattr(self.options, rf["type"]):
            raise HTTPFault(400, "invalid_request_error",
                            f"response_format type {rf['type']!r} is not supported by this server")
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema")
        return system_texts, user_texts, images, schema

    def _parse_anthropic(self, body: dict, msgs: list) -> tuple[list, list, list, Any]:
        """System texts, user texts, images and the answer schema (or None) of an Anthropic message."""
        if not isinstance(body.get("max_tokens"), int):
            raise HTTPFault(400, "invalid_request_error", "max_tokens: Field required")
        if request.headers.get("anthropic-version", "2026-10-21") >= "2026-10-21":
            for name in ("temperature", "top_p", "top_k"):
                if name in body:  # API version 2026-10-21 dropped sampling parameters
                    raise HTTPFault(400, "invalid_request_error", f"{name}: Extra inputs are not permitted")
        system_texts = list(_text_of(body.get("system") or "")[0])
        user_texts: list = []
        images: list = []
        for m in msgs:
            texts, imgs = _text_of(m.get("content"))
            user_texts.extend(texts)
            images.extend(imgs)
        schema = None
        if "output_config" in body:
            if not self.options.output_config:
                raise HTTPFault(400, "invalid_request_error", "output_config: Extra inputs are not permitted")
            schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
        choice = body.get("tool_choice") or {}
        if schema is None and choice.get("type") == "tool":
            tool = next((t for t in body.get("tools") or [] if t.get("name") == choice.get("name")), None)
            if tool is None:
                raise HTTPFault(400, "invalid_request_error",
                                f"tool_choice names unknown tool {choice.get('name')!r}")
            schema = tool.get("input_schema")
        return system_texts, user_texts, images, schema

    def _fault(self, api: str, info: RequestInfo) -> str | None:
        """The fault to apply: an HTTP fault is raised here, others are returned by name."""
        m = MARKER.search(info.system + "\n" + info.user)
        kind, arg = (m.group(1), m.group(2)) if m else (None, None)
        drawn = False  # a fault drawn by fault_rate applies to this attempt only
        if kind is None and self.options.fault_rate > 0:
            with self._lock:
                if self._rng.random() < self.options.fault_rate:
                    kind, drawn = str(self._rng.choice(self.options.fault_kinds)), True
        if kind is None:
            return None
        if kind.isdigit():
            status = int(kind)
            if not drawn:
                times = math.inf if arg == "always" else int(arg) if arg else self.options.fault_times
                key = hashlib.sha256(json.dumps([api, info.model, info.system, info.user]).encode()).hexdigest()
                with self._lock:
                    seen = self._seen[key] = self._seen.get(key, 0) + 1
                if seen > times:
                    return None
            headers = {}
            if status == 429:
                ra = self.options.retry_after
                headers = {"retry-after": str(math.ceil(ra)), "retry-after-ms": str(int(ra * 1000))}
                kind_name = "rate_limit_error" if api == "anthropic" else "rate_limit_exceeded"
                raise HTTPFault(429, kind_name, "Rate limit reached (fake). Please retry after a moment.", headers)
            kind_name = "api_error" if status >= 500 else "invalid_request_error"
            raise HTTPFault(status, kind_name, f"injected fault {status} (fake)")
        if kind == "timeout":
            self._stopping.wait(float(arg) if arg else self.options.timeout_s)
            return "timeout"
        if kind in ("malformed", "truncated", "refusal", "bare", "nochoices"):
            return kind
        raise HTTPFault(400, "invalid_request_error", f"unknown fault marker [[fault:{kind}]]")

    def _content(self, info: RequestInfo, body: dict) -> tuple[str, list | None]:
        """The answer text and, when the request asked ``logprobs: true``, its token log-probabilities."""
        try:
            answer = self.answers(info)
        except Exception as exc:  # a broken answer source is a server error, visible to the test
            raise HTTPFault(500, "api_error", f"answer source failed: {type(exc).__name__}: {exc}") from None
        scored = answer if isinstance(answer, ScoredAnswer) else ScoredAnswer(answer)
        if not isinstance(scored.value, dict):
            return json.dumps(scored.value, ensure_ascii=False), None
        content, spans = serialize(scored.value)
        if info.api != "openai" or body.get("logprobs") is not True:
            return content, None
        top: int = body["top_logprobs"] if isinstance(body.get("top_logprobs"), int) else 0
        return content, token_logprobs(content, spans, scored.probs, scored.free, top)

    def _answer(self, api: str, info: RequestInfo, fault: str | None, request_id: str, body: dict) -> dict:
        input_tokens = count_tokens(info.system) + count_tokens(info.user) + IMAGE_TOKENS * len(info.images)
        refusal = fault == "refusal"
        content, logprobs = "", None
        if not refusal:
            content, logprobs = self._content(info, body)
        truncated = False
        if fault == "malformed":
            content = "Sure! Here is the JSON you asked for: " + content[:-1] + ", oops"
        elif fault == "truncated":
            content, truncated = content[: max(1, len(content) // 2)], True
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and count_tokens(content) > limit:
            content, truncated = content[: limit * 4], True
        output_tokens = max(1, count_tokens(REFUSAL_TEXT if refusal else content))
        tool = (api == "anthropic" and "output_config" not in body
                and (body.get("tool_choice") or {}).get("type") == "tool")
        if api == "openai":
            return openai_shape(fault, {
                "id": f"chatcmpl-{request_id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": info.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": None if refusal else content,
                                "refusal": REFUSAL_TEXT if refusal else None, "annotations": []},
                    "logprobs": {"content": logprobs, "refusal": None} if logprobs is not None and not truncated
                    and fault != "malformed" else None,
                    "finish_reason": "length" if truncated else "stop",
                }],
                "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                          "total_tokens": input_tokens + output_tokens,
                          "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
                "service_tier": "default",
                "system_fingerprint": "fp_fakellm",
            })
        if refusal:
            blocks, stop = [{"type": "text", "text": REFUSAL_TEXT}], "refusal"
        elif tool and not truncated and fault != "malformed":
            blocks = [{"type": "tool_use", "id": f"toolu_{request_id}", "name": body["tool_choice"]["name"],
                       "input": json.loads(content)}]
            stop = "tool_use"
        else:
            blocks, stop = [{"type": "text", "text": content}], "max_tokens" if truncated else "end_turn"
        return {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": info.model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"},
        }


def openai_shape(fault: str | None, reply: dict) -> dict:
    """``reply`` as ``[[fault:bare]]`` / ``[[fault:nochoices]]`` reshape it (unchanged otherwise)."""
    if fault == "nochoices":
        return dict(reply, choices=[])
    if fault == "bare":
        choice = reply["choices"][0]
        return {"id": reply["id"], "object": reply["object"], "model": reply["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"]},
                             "finish_reason": choice["finish_reason"]}]}
    return reply


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log lines (tests stay readable)."""

    def log_request(self, *args, **kwargs) -> None:
        pass

    def log_error(self, *args, **kwargs) -> None:
        pass
