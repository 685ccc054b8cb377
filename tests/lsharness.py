"""A real Label Studio 1.23.2 for tests: the pytest parts around ``demo/lsserver.py``.

``demo/lsserver.py`` starts Label Studio headless on loopback and stops it by PID
(``LabelStudioServer``, ``start_server``, ``find_binary``, ``label_studio_settings``;
re-exported here for the tests and scripts that import them from this module).

The pytest fixture ``label_studio`` (session scope) gives every test the same
server; tests isolate themselves by creating their own projects
(``label_studio.create_project(...)``).  It is exposed to all tests by the line
``pytest_plugins = ["tests.lsharness"]`` in ``tests/conftest.py``.

Finding the ``label-studio`` command -- the one documented exception to "only
core/settings.py reads the environment": ``find_binary`` reads ``LS_BIN`` and this
harness reads ``ALLOW_SKIP_SERVICES`` and ``CI`` from ``os.environ`` (``make test``
sets ``LS_BIN`` to the output of ``tools/ensure_label_studio.sh``).  When ``LS_BIN`` is
unset the fixture runs ``tools/ensure_label_studio.sh`` itself (which installs
Label Studio into its own virtualenv on first use, about 35 s).

When Label Studio cannot be found, installed or started, the tests that need it
FAIL (error at setup) with the installer's message: a run without them must not
look green.  For local development only, ``ALLOW_SKIP_SERVICES=1`` turns that into
a skip; it is ignored under ``CI=true``, and a session where Label Studio tests
were skipped anyway (by any means) then exits as failed (``pytest_sessionfinish``
below).  Skips and their reasons are always listed (``-ra`` in pyproject.toml).

A fresh data directory costs about 20 s of migrations; the first start of a
Label Studio build therefore saves its migrated data directory as a template
under ``~/.cache/llm-prelabel/ls-template-<build>/`` and later sessions copy it
(start in about 3 s).
"""
from __future__ import annotations

import os

import httpx
import pytest

from demo.lsserver import (  # noqa: F401  (re-exported: tests and scripts import them from here)
    CACHE,
    ENSURE_SCRIPT,
    PASSWORD,
    REPO,
    TOKEN,
    USERNAME,
    Admin,
    LabelStudioServer,
    PortInUse,
    find_binary,
    free_port,
    label_studio_settings,
    prepare_data_dir,
    start_server,
)


class FaultyProxy:
    """A stand-in Label Studio in front of a real one, for failure tests.

    Every request goes through ``fail(n, method, path)`` (``n`` counts from 1): when it
    returns a status code, the proxy answers that status itself; otherwise it forwards
    the request to ``upstream`` (or answers 502 when there is none).  ``.requests``
    lists ``(method, path)`` of every request.  Binds 127.0.0.1; ``close()`` stops it.
    """

    def __init__(self, upstream: str | None, fail):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                outer.requests.append((self.command, self.path))
                n = len(outer.requests)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status = fail(n, self.command, self.path)
                if status is None and upstream is None:
                    status = 502
                if status is not None:
                    return self._reply(status, json.dumps({"detail": f"injected {status}"}).encode())
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                r = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=120)
                self._reply(r.status_code, r.content, r.headers.get("content-type", "application/json"))

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def skipping_allowed() -> bool:
    """``ALLOW_SKIP_SERVICES=1`` outside CI: a missing Label Studio skips its tests instead of failing them."""
    return os.environ.get("ALLOW_SKIP_SERVICES") == "1" and os.environ.get("CI", "").lower() not in ("true", "1")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A running Label Studio 1.23.2 shared by the session (stopped at the end).

    Yields a :class:`LabelStudioServer`: ``.url``, ``.token``, ``.settings()``,
    ``.sdk()``, ``.create_project(config)``.  Fails the tests that use it when Label
    Studio is unavailable (skips them only with ``ALLOW_SKIP_SERVICES=1`` outside CI).
    """
    try:
        binary = find_binary()
        server = start_server(tmp_path_factory.mktemp("label-studio-data"), binary)
    except RuntimeError as exc:
        message = f"Label Studio 1.23.2 is not available: {exc}"
        if skipping_allowed():
            pytest.skip(f"{message} (skipped: ALLOW_SKIP_SERVICES=1)")
        pytest.fail(f"{message}\n(for local runs without it: ALLOW_SKIP_SERVICES=1, or -m 'not labelstudio')",
                    pytrace=False)
    try:
        yield server
    finally:
        server.stop()


_SKIPPED_LS: list[str] = []


def pytest_runtest_logreport(report):
    """Remember Label Studio tests that were skipped (whatever skipped them)."""
    if report.skipped and "labelstudio" in report.keywords:
        _SKIPPED_LS.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Without ``ALLOW_SKIP_SERVICES=1`` (and always under CI), skipped Label Studio tests fail the run."""
    if _SKIPPED_LS and not skipping_allowed() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: {len(_SKIPPED_LS)} Label Studio test(s) were skipped, e.g. {_SKIPPED_LS[0]}; "
                                "they must run (ALLOW_SKIP_SERVICES=1 allows skipping outside CI)", red=True)
