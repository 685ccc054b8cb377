"""A headless Label Studio 1.23.2 on loopback, started and stopped by PID (the demo's and the tests').

``LabelStudioServer`` runs ``label-studio start`` in a data directory of its own,
with SQLite, a fixed admin user and a fixed legacy API token, on a port of
127.0.0.1, and waits until ``/health`` answers *and* the token is accepted (Label
Studio silently moves to another port when its port is busy, so a health answer
alone could come from someone else's server).  ``stop()`` terminates the process
group it started (by its own PID) and nothing else.

``find_binary()`` finds the ``label-studio`` command -- the one documented
exception to "only core/settings.py reads the environment": it reads ``LS_BIN``
from ``os.environ`` (``make test`` and ``make demo`` set it to the output of
``tools/ensure_label_studio.sh``).  When ``LS_BIN`` is unset it runs
``tools/ensure_label_studio.sh`` itself (which installs Label Studio into its own
virtualenv on first use, about 35 s to 4 minutes).

A fresh data directory costs about 20 s of migrations; the first start of a
Label Studio build with given credentials therefore saves its migrated data
directory as a template under ``~/.cache/llm-prelabel/ls-template-<build>/``
and ``prepare_data_dir`` copies it later (start in about 3 s).

Used by ``python -m demo`` (``demo.live``) and by the tests' fixture
(``tests/lsharness.py``, which adds the pytest parts); the default credentials
are the tests' throw-away ones.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent  # the checkout (demo/ is one level down)
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
        self.data_dir = Path(data_dir).absolute()  # Label Studio runs in it: a relative path would nest
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

    # ---- conveniences (tests, demo) ----------------------------------------
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


def installed_command(env_var: str, script: Path, timeout: float) -> str:
    """The command ``$env_var`` names, else the path the install ``script`` prints (last line).

    Raises RuntimeError with the script's output when it cannot install it.
    """
    given = os.environ.get(env_var)  # documented exception: see the module docstring
    if given:
        if not os.access(given, os.X_OK):
            raise RuntimeError(f"{env_var}={given} is not an executable")
        return given
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"tools/{script.name} failed: {exc}") from exc
    path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"tools/{script.name} failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return path


def find_binary() -> str:
    """The label-studio command: $LS_BIN, else whatever tools/ensure_label_studio.sh prints."""
    return installed_command("LS_BIN", ENSURE_SCRIPT, timeout=900)


@dataclass(frozen=True)
class Admin:
    """The fixed admin user and legacy API token a data directory is created with."""
    username: str = USERNAME
    password: str = PASSWORD
    token: str = TOKEN


def _template_dir(binary: str, admin: Admin) -> Path:
    build = hashlib.sha1(f"{os.path.realpath(binary)}|{admin.username}|{admin.token}".encode()).hexdigest()[:12]
    return CACHE / f"ls-template-{build}"


def prepare_data_dir(binary: str, data_dir: Path, admin: Admin = Admin()) -> None:
    """Fill ``data_dir`` with a migrated Label Studio data dir (copied from the template of ``admin``, made once)."""
    template = _template_dir(binary, admin)
    if (template / "label_studio.sqlite3").exists():
        shutil.copytree(template, data_dir, dirs_exist_ok=True)
        return
    # First run of this build: migrate in a scratch dir, stop cleanly, publish atomically.
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ls-template-", dir=CACHE))
    server = LabelStudioServer(binary, scratch, username=admin.username, password=admin.password, token=admin.token)
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


def start_server(data_dir: str | Path | None = None, binary: str | None = None, *, admin: Admin = Admin(),
                 port: int | None = None) -> LabelStudioServer:
    """Start a Label Studio in ``data_dir`` (default: a new temporary directory); a data directory
    without a database is first filled from the migrated template.  The caller stops it (``server.stop()``)."""
    binary = binary or find_binary()
    data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="ls-"))
    if not (data_dir / "label_studio.sqlite3").exists():
        prepare_data_dir(binary, data_dir, admin)
    return LabelStudioServer(binary, data_dir, port=port, username=admin.username, password=admin.password,
                             token=admin.token).start()


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


