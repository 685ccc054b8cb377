"""A real Label Studio 1.23.2 for tests: started headless on loopback, stopped by PID.

``LabelStudioServer`` runs ``label-studio start`` in a data directory of its own,
with a fixed admin user and a fixed legacy API token, on a free port of
127.0.0.1, and waits until ``/health`` answers *and* the token is accepted (Label
Studio silently moves to another port when its port is busy, so a health answer
alone could come from someone else's server).  ``stop()`` terminates the process
group it started (by its own PID) and nothing else.

The pytest fixture ``label_studio`` (session scope) gives every test the same
server; tests isolate themselves by creating their own projects
(``label_studio.create_project(...)``).  It is exposed to all tests by the line
``pytest_plugins = ["tests.lsharness"]`` in ``tests/conftest.py``.

Finding the ``label-studio`` command -- the one documented exception to "only
core/settings.py reads the environment": this harness reads ``LS_BIN``,
``ALLOW_SKIP_SERVICES`` and ``CI`` from ``os.environ`` (``make test`` sets
``LS_BIN`` to the output of ``tools/ensure_label_studio.sh``).  When ``LS_BIN`` is
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

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
ENSURE_SCRIPT = REPO / "tools" / "ensure_label_studio.sh"
CACHE = Path.home() / ".cache" / "llm-prelabel"

# Fixed test-only credentials of the throw-away server (never a real account).
USERNAME = "tests@example.com"
PASSWORD = "tests-password-123"
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortInUse(RuntimeError):
    """Label Studio exited because its port was taken."""


class LabelStudioServer:
    """One ``label-studio start`` process, owned by this object::

        server = LabelStudioServer("/path/to/label-studio", "/tmp/ls-data").start()
        server.url    # 'http://127.0.0.1:40123'
        server.stop()
    """

    def __init__(self, binary: str, data_dir: str | Path, *, port: int | None = None,
                 username: str = USERNAME, password: str = PASSWORD, token: str = TOKEN):
        self.binary = str(binary)
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.username, self.password, self.token = username, password, token
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0
        self.log_path = self.data_dir / "label-studio.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment Label Studio is started with (loopback-friendly, no telemetry)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        })
        return env

    def start(self, timeout: float = 180.0, attempts: int = 3) -> "LabelStudioServer":
        """Start the server and wait until it answers with our token; raise RuntimeError otherwise.

        When the port was taken between choosing and binding, Label Studio either moves
        to the next port (followed through its log) or exits with "That port is already
        in use" (then we retry on another free port, up to ``attempts`` times).
        """
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except PortInUse:
                self.stop()
                if attempt == attempts - 1:
                    raise RuntimeError(f"no free port for label-studio after {attempts} attempts") from None
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> "LabelStudioServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self._log_offset = log.tell()
        try:
            self.proc = subprocess.Popen(
                [self.binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port)],
                env=self.env(), cwd=str(self.data_dir), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll /health, then check that the token is accepted (proves it is *our* server)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if "That port is already in use" in self._new_log():
                raise PortInUse(self.port)  # (the process may linger after this; start() stops it)
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}; log: {self.log_tail()}")
            self._adopt_logged_port()
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    who = httpx.get(self.url + "/api/current-user/whoami",
                                    headers={"Authorization": f"Token {self.token}"}, timeout=5)
                    if who.status_code == 200 and who.json().get("email") == self.username:
                        return
                    last = f"whoami {who.status_code}"
                else:
                    last = f"health {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise RuntimeError(f"label-studio on {self.url} not ready after {timeout:.0f}s ({last}); "
                           f"log: {self.log_tail()}")

    def _new_log(self) -> str:
        """What the current process wrote to the log so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _adopt_logged_port(self) -> None:
        """Label Studio moves to the next free port when ours got taken meanwhile; follow it."""
        text = self._new_log()
        found = re.findall(r"Starting development server at http://127\.0\.0\.1:(\d+)/", text)
        if found:
            self.port = int(found[-1])

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the process group this object started (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        pgid = proc.pid  # start_new_session=True: the group id is our own child's PID
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)

    # ---- conveniences for tests ------------------------------------------
    def settings(self, **changes) -> Settings:
        """Project settings pointing at this server (tests never read env vars)."""
        return Settings(label_studio_url=self.url, label_studio_api_key=self.token, **changes)

    def sdk(self):
        """A label_studio_sdk.LabelStudio client for this server."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token, timeout=120)

    def create_project(self, label_config: str, title: str = "test project") -> int:
        """Create a project and return its id."""
        return self.sdk().projects.create(title=title, label_config=label_config).id

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


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


def find_binary() -> str:
    """The label-studio command: $LS_BIN, else whatever tools/ensure_label_studio.sh prints.

    Raises RuntimeError with the installer's output when it cannot be installed.
    """
    binary = os.environ.get("LS_BIN")  # documented exception: see the module docstring
    if binary:
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"LS_BIN={binary} is not an executable")
        return binary
    try:
        out = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"tools/ensure_label_studio.sh failed: {exc}") from exc
    path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"tools/ensure_label_studio.sh failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return path


def _template_dir(binary: str) -> Path:
    build = hashlib.sha1(f"{os.path.realpath(binary)}|{USERNAME}|{TOKEN}".encode()).hexdigest()[:12]
    return CACHE / f"ls-template-{build}"


def prepare_data_dir(binary: str, data_dir: Path) -> None:
    """Fill ``data_dir`` with a migrated Label Studio data dir (copied from the template, made once)."""
    template = _template_dir(binary)
    if (template / "label_studio.sqlite3").exists():
        shutil.copytree(template, data_dir, dirs_exist_ok=True)
        return
    # First run of this build: migrate in a scratch dir, stop cleanly, publish atomically.
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ls-template-", dir=CACHE))
    server = LabelStudioServer(binary, scratch)
    try:
        server.start()
    finally:
        server.stop()
    (scratch / "label-studio.log").unlink(missing_ok=True)
    try:
        os.rename(scratch, template)
    except OSError:  # another session published it first
        shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(template, data_dir, dirs_exist_ok=True)


def start_server(data_dir: str | Path | None = None, binary: str | None = None) -> LabelStudioServer:
    """Start a throw-away Label Studio in ``data_dir`` (default: a new temporary directory), filled
    from the migrated template; the caller stops it (``server.stop()``)."""
    binary = binary or find_binary()
    data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="ls-"))
    prepare_data_dir(binary, data_dir)
    return LabelStudioServer(binary, data_dir).start()


@contextmanager
def label_studio_settings(url: str | None = None, token: str | None = None) -> Iterator[Settings]:
    """Settings for the Label Studio at ``url`` with API ``token``; without ``url``, for a throw-away
    one started here (ledger and history in its data directory) and stopped on exit.  For scripts
    (``bench/``, ``make_fixture``) that take ``--url/--token``."""
    if url:
        yield Settings(label_studio_url=url, label_studio_api_key=token)
        return
    server = start_server()
    try:
        yield server.settings(data_dir=str(server.data_dir / "scoring"))
    finally:
        server.stop()


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
