"""docker-compose.yml and .env.example, checked without a Docker engine (none runs here).

- The file, interpolated the way ``docker compose`` does with the values of .env.example, is valid
  against the Compose Specification's JSON schema (tests/fixtures/compose-spec.json, copied from
  compose-spec/compose-spec ``schema/compose-spec.json``, Apache-2.0, commit 170098ba; the
  ``docker compose`` plugin is not installed here and ``docker`` is only the client).
- Required variables (``${VAR:?message}``) stop the start with their message; every variable of
  .env.example is used and every variable used is in .env.example.
- Everything passed to the backend, worker and scheduler is a variable core/settings.py reads;
  Label Studio's variables exist in Label Studio 1.23.2's source.
- The commands exist (gunicorn's ``backend.wsgi:app``, ``llm-prelabel worker``), and the health
  checks are *run* here against the real things (backend, RQ worker and cron scheduler, Redis,
  Label Studio) with the port they use in the containers, so a health check that could never
  pass (or never fail) is caught.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from werkzeug.serving import make_server

from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
SCHEMA = json.loads((REPO / "tests" / "fixtures" / "compose-spec.json").read_text())
REQUIRED = {"LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_API_KEY"}
APP_SERVICES = ("backend", "worker", "scheduler")  # built from this repository (one image)
COMPOSE_OWN = {"COMPOSE_PROFILES"}  # read by docker compose itself, not interpolated in the file
VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
                 r"|(?P<bare>[A-Za-z_]\w*)|(?P<esc>\$))")


# --------------------------------------------------------------------------- helpers
def env_example() -> dict[str, str]:
    """.env.example as {name: value} (dotenv syntax: NAME=value, # comments)."""
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
            out[name] = value
    return out


class Missing(Exception):
    """A required variable is unset or empty: the message docker compose prints."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's interpolation: ``${V}``, ``${V:-default}``, ``${V-default}``, ``${V:?err}``,
    ``${V?err}``, ``$V``, ``$$`` (a literal ``$``)."""
    def one(m: re.Match) -> str:
        if m["esc"]:
            return "$"
        name = m["braced"] or m["bare"]
        value, op, arg = env.get(name), m["op"], m["arg"] or ""
        assert m["bare"] or op or not arg, f"unsupported interpolation {m[0]!r}"
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise Missing(f"required variable {name} is missing a value: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return value or ""
    return VAR.sub(one, text)


def filled_env() -> dict[str, str]:
    """.env.example with the required values filled in (as a user would)."""
    return {**env_example(), "LABEL_STUDIO_PASSWORD": "a-password", "LABEL_STUDIO_API_KEY": "f" * 40}


def compose(env: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE_TEXT, filled_env() if env is None else env))


def used_variables() -> set[str]:
    return {m["braced"] or m["bare"] for m in VAR.finditer(COMPOSE_TEXT) if not m["esc"]}


def settings_variables() -> set[str]:
    """Every environment variable Settings.from_env reads (recorded, not parsed from the source)."""
    seen: set[str] = set()

    class Recorder(dict):
        def get(self, key, default=None):
            seen.add(key)
            return default

        def __getitem__(self, key):
            seen.add(key)
            raise KeyError(key)

        def __contains__(self, key):
            seen.add(key)
            return False

    Settings.from_env(Recorder())
    return seen


def healthcheck(service: str, doc: dict | None = None) -> list[str]:
    test = (doc or compose())["services"][service]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return test


def run_check(argv: list[str], env: dict[str, str], timeout: float = 30) -> int:
    """Run a health check's command here (``python`` = this interpreter; the image's /app = REPO)."""
    argv = [sys.executable if a in ("python", "python3") else a for a in argv]
    return subprocess.run(argv, cwd=REPO, env={**os.environ, **env}, capture_output=True, timeout=timeout).returncode


def wait_for(argv: list[str], env: dict[str, str], want: int, timeout: float = 30) -> int:
    deadline, code = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        code = run_check(argv, env)
        if code == want:
            break
        time.sleep(0.5)
    return code


# --------------------------------------------------------------------------- the file itself
def test_the_file_is_valid_against_the_compose_spec_schema():
    doc = compose()
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    assert set(doc["services"]) == {"label-studio", "redis", "backend", "worker", "scheduler"}


def test_the_schema_catches_mistakes():
    """The vendored schema is strict enough to be worth running."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    bad = compose()
    bad["services"]["worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    bad["services"]["backend"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["redis"]["restart"] = ["always"]
    assert len(list(validator.iter_errors(bad))) >= 3


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_a_missing_required_variable_stops_the_start_with_its_message(name):
    for value in (None, ""):
        env = {k: v for k, v in filled_env().items() if k != name}
        if value is not None:
            env[name] = value
        with pytest.raises(Missing, match=rf"{name} is missing a value: set {name}"):
            compose(env)


def test_env_example_and_the_file_name_the_same_variables():
    example = env_example()
    assert used_variables() == set(example) - COMPOSE_OWN
    required = {m["braced"] for m in VAR.finditer(COMPOSE_TEXT) if m["op"] == ":?"}
    assert required == REQUIRED
    # each one is documented as required in the comment block right above it (or above its pair)
    blocks = re.findall(r"((?:#.*\n)+)((?:[A-Z_]+=.*\n)+)", (REPO / ".env.example").read_text())
    documented = {line.split("=")[0] for comment, lines in blocks if "REQUIRED" in comment for line in lines.split()}
    assert documented == REQUIRED
    assert not example["LABEL_STUDIO_PASSWORD"] and not example["LABEL_STUDIO_API_KEY"]  # no shared secrets
    # COMPOSE_PROFILES, when set, names a profile of the file.
    profiles = {p for s in compose()["services"].values() for p in s.get("profiles", [])}
    assert profiles == {"schedules"}


def test_the_app_services_get_only_variables_core_settings_reads():
    doc, known = compose(), settings_variables()
    assert {"LABEL_STUDIO_URL", "REDIS_URL", "PROMPTS_FILE"} <= known
    for service in APP_SERVICES:
        env = doc["services"][service]["environment"]
        assert set(env) <= known, (service, sorted(set(env) - known))
        # what the settings module makes of it: the compose services, by name
        settings = Settings.from_env({k: str(v) for k, v in env.items()})
        assert settings.label_studio_url == "http://label-studio:8080"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.label_studio_api_key == "f" * 40
        assert settings.prompts_file.startswith("/app/config/")
        assert doc["services"][service]["volumes"] == ["./config:/app/config:ro"]  # a folder: a missing file
        # cannot turn into a directory, and an absent schedules.yaml breaks nothing without the profile


def test_services_reach_each_other_by_name_on_the_ports_they_listen_on():
    doc = compose()
    services = doc["services"]
    ls_url = urlsplit(services["backend"]["environment"]["LABEL_STUDIO_URL"])
    assert ls_url.hostname in services and ls_url.port == 8080
    assert services["label-studio"]["ports"] == ["8080:8080"]
    assert healthcheck("label-studio", doc)[-1].count("http://127.0.0.1:8080/health") == 1
    # The backend: gunicorn (the image's CMD) binds 9090, published and health-checked on 9090.
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M).group(1))
    assert cmd[0] == "gunicorn" and cmd[cmd.index("--bind") + 1] == "0.0.0.0:9090"
    module, app = cmd[-1].split(":")
    source = (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert re.search(rf"^{app} = ", source, re.M), f"{cmd[-1]}: no `{app} = ...` in {module}"
    assert services["backend"]["ports"] == ["127.0.0.1:9090:9090"]
    assert "http://127.0.0.1:9090/health" in healthcheck("backend", doc)[-1]
    assert "http://backend:9090" in COMPOSE_TEXT.split("services:")[0]  # the header tells users this URL
    # Redis: the URL the apps use names the service; persistence is on.
    assert urlsplit(services["worker"]["environment"]["REDIS_URL"]).hostname == "redis"
    assert services["redis"]["command"] == ["redis-server", "--appendonly", "yes"]
    assert {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")} \
        == set(doc["volumes"]) == {"label-studio-data", "redis-data"}


def test_every_service_restarts_has_a_health_check_and_waits_for_healthy_dependencies():
    services = compose()["services"]
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services and how == {"condition": "service_healthy"}, (name, dep)
    assert set(services["worker"]["depends_on"]) == set(services["scheduler"]["depends_on"]) == {"redis",
                                                                                                  "label-studio"}
    assert set(services["backend"]["depends_on"]) == {"redis"}


def test_the_worker_commands_exist():
    from scoring.cli import build_parser

    scripts = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    services = compose()["services"]
    for name in ("worker", "scheduler"):
        command = services[name]["command"]
        assert command[0] in scripts
        args = build_parser().parse_args(command[1:])
        assert args.command == "worker" and args._module.__name__ == "scoring.commands.worker"
    assert services["scheduler"]["command"][-2:] == ["--schedules", "/app/config/schedules.yaml"]
    assert services["scheduler"]["profiles"] == ["schedules"] and "profiles" not in services["worker"]


# --------------------------------------------------------------------------- health checks, run for real
@pytest.fixture
def backend_on_a_free_port(tmp_path):
    """The backend app (the demo's prompt versions) on 127.0.0.1, as gunicorn serves it in the image."""
    from backend.app import create_app

    servers = []

    def start(**changes) -> int:
        settings = Settings(prompts_file=str(REPO / "prompts.example.yaml"), data_dir=str(tmp_path)).replace(**changes)
        server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_port

    yield start
    for s in servers:
        s.shutdown()


def test_the_backend_health_check_passes_on_a_live_backend_also_with_basic_auth(backend_on_a_free_port):
    check = healthcheck("backend")
    port = backend_on_a_free_port()
    on_port = [a.replace("127.0.0.1:9090", f"127.0.0.1:{port}") for a in check[1:]]
    assert run_check(on_port, {}) == 0
    auth = {"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "pw-123"}
    port = backend_on_a_free_port(basic_auth_user="ls", basic_auth_pass="pw-123")
    on_port = [a.replace("127.0.0.1:9090", f"127.0.0.1:{port}") for a in check[1:]]
    assert run_check(on_port, auth) == 0
    assert run_check(on_port, {"BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "wrong"}) == 1
    assert run_check([a.replace("127.0.0.1:9090", "127.0.0.1:1") for a in check[1:]], {}) == 1  # nothing there


def test_the_redis_health_check_needs_a_pong():
    check = healthcheck("redis")
    assert check[0] == "CMD-SHELL"
    assert subprocess.run(["sh", "-c", check[1]], capture_output=True, timeout=10).returncode == 0  # 127.0.0.1:6379
    wrong = check[1].replace("redis-cli ping", "redis-cli -p 1 ping")
    assert subprocess.run(["sh", "-c", wrong], capture_output=True, timeout=10).returncode != 0


@pytest.fixture
def queue_name():
    """A queue of this test only; its keys in the shared Redis are removed afterwards."""
    import redis

    name = f"test-compose-{uuid.uuid4().hex[:8]}"
    yield name
    conn = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    for key in conn.scan_iter(match=f"*{name}*"):
        conn.delete(key)


def start_worker(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scoring", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return err or ""


@pytest.mark.parametrize("service", ["worker", "scheduler"])
def test_the_worker_health_checks_follow_a_real_worker(service, queue_name, tmp_path):
    doc = compose()
    check = healthcheck(service, doc)[1:]
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "RQ_QUEUE": queue_name,
           # as compose sets them (x-app): the worker checks them at start, it does not call Label Studio
           "LABEL_STUDIO_URL": "http://label-studio:8080", "LABEL_STUDIO_API_KEY": "compose-test-token"}
    assert run_check(check, env) == 1  # no worker yet
    command = doc["services"][service]["command"][1:]
    if "--schedules" in command:
        schedules = tmp_path / "schedules.yaml"
        schedules.write_text("schedules:\n  - {project: 1, version: v1, cron: '0 0 1 1 *'}\n")  # never due here
        command[command.index("--schedules") + 1] = str(schedules)
    proc = start_worker(command, env)
    try:
        assert wait_for(check, env, want=0) == 0, proc.stderr
        if service == "worker":  # the scheduler's check also wants the cron: a plain worker is not enough
            assert run_check(healthcheck("scheduler", doc)[1:], env) == 1
    finally:
        err = stop(proc)
    assert wait_for(check, env, want=1) == 1, err  # a stopped worker is unhealthy


# --------------------------------------------------------------------------- Label Studio's side
@pytest.mark.labelstudio
def test_label_studio_reads_the_variables_the_file_gives_it(label_studio):
    """Each LABEL_STUDIO_* variable is one Label Studio 1.23.2 reads (LABEL_STUDIO_ + the name it asks for)."""
    binary = Path(label_studio.binary).resolve()
    site = next(binary.parent.parent.glob("lib/python3*/site-packages/label_studio"))
    source = "\n".join(p.read_text(errors="replace") for p in site.rglob("*.py") if "tests" not in p.parts)
    env = compose()["services"]["label-studio"]["environment"]
    for name in env:
        bare = name.removeprefix("LABEL_STUDIO_")
        asked = re.search(rf"get_(?:bool_)?env\(\s*'{bare}'", source) or f"'{name}'" in source
        assert asked, f"Label Studio 1.23.2 does not read {name}"
    # The admin's token and the apps' token are the same variable.
    raw = yaml.safe_load(COMPOSE_TEXT)
    assert raw["services"]["label-studio"]["environment"]["LABEL_STUDIO_USER_TOKEN"].startswith(
        "${LABEL_STUDIO_API_KEY:?")
    assert raw["x-app"]["environment"]["LABEL_STUDIO_API_KEY"].startswith("${LABEL_STUDIO_API_KEY:?")
    # The harness starts Label Studio with these same settings (and its tests pass with them).
    for name in ("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "LABEL_STUDIO_ML_BLOCK_LOCAL_IP",
                 "LABEL_STUDIO_SSRF_PROTECTION_ENABLED", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"):
        assert env[name] == label_studio.env()[name], name


@pytest.mark.labelstudio
def test_the_label_studio_health_check_passes_on_a_live_label_studio(label_studio):
    check = healthcheck("label-studio")[1:]
    assert run_check([a.replace("127.0.0.1:8080", f"127.0.0.1:{label_studio.port}") for a in check], {}) == 0
    assert run_check([a.replace("127.0.0.1:8080", "127.0.0.1:1") for a in check], {}) == 1
    assert check[0] == "python3"  # the Label Studio image is a python image: python3 is there, curl may not be
