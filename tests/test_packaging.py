"""Packaging and the test run itself: pins agree, modules import quietly, doctests are collected,
a missing Label Studio fails the run (it is not skipped), and the Label Studio install is safe to share."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("backend", "scoring", "core", "fakellm")
NOT_IMPORTED = {"backend/wsgi.py"}  # acts on import (builds the app for gunicorn); see conftest.py
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_sections() -> dict[str, dict[str, str]]:
    """requirements.txt as {"runtime": {name: pin}, "test": {name: pin}} (sections by their header comment)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.startswith("# Runtime"):
            current = sections.setdefault("runtime", {})
        elif line.startswith("# Tests"):
            current = sections.setdefault("test", {})
        elif line.split("#")[0].strip():
            assert current is not None, f"requirements.txt: {line!r} comes before a section header"
            name, pin = parse_pin(line.split("#")[0].strip())
            current[name] = pin
    return sections


def parse_pin(spec: str) -> tuple[str, str]:
    """``'Foo_Bar==1.2'`` -> ``('foo-bar', '1.2')`` (PEP 503 name); anything but an exact pin fails."""
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", spec)
    assert m, f"not an exact pin: {spec!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2)


def modules() -> list[str]:
    """Dotted names of every module of the four packages, except __main__ and NOT_IMPORTED."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path.name == "__main__.py" or rel in NOT_IMPORTED:
                continue
            found.append(rel[:-3].replace("/", ".").removesuffix(".__init__"))
    return found


def run(args, env=None, timeout=300, cwd=REPO):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ALLOW_SKIP_SERVICES", "LS_BIN", "LS_VENV")}
    env.update(extra)
    return env


# --------------------------------------------------------------------------- pins and metadata
def test_requirements_and_pyproject_pin_the_same_versions():
    sections = requirement_sections()
    project = PYPROJECT["project"]
    assert dict(map(parse_pin, project["dependencies"])) == sections["runtime"]
    assert dict(map(parse_pin, project["optional-dependencies"]["test"])) == sections["test"]
    assert {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "schemathesis"} <= set(sections["test"])
    assert not set(sections["runtime"]) & set(sections["test"])


def test_console_scripts_name_callables_and_every_package_is_packaged():
    import importlib

    for script, target in PYPROJECT["project"]["scripts"].items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), script
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in PACKAGES:
        assert package in include and f"{package}.*" in include


# --------------------------------------------------------------------------- imports and doctests
def test_importing_any_module_does_nothing_visible():
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    out = run([sys.executable, "-c", code, *modules()], env=clean_env(), timeout=120)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


@pytest.mark.parametrize("module", ["backend.__main__", "fakellm.__main__", "demo.__main__"])
def test_main_modules_run_only_as_main(module):
    out = run([sys.executable, "-c", f"import {module}"], env=clean_env(), timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_every_module_with_examples_has_its_doctests_collected():
    out = run([sys.executable, "-m", "pytest", "--collect-only", "-q", *PACKAGES], env=clean_env())
    assert out.returncode == 0, out.stdout[-2000:]
    collected = {line.split(":")[0] for line in out.stdout.splitlines() if re.fullmatch(r"\S+\.py: \d+", line)}
    with_examples = {p.relative_to(REPO).as_posix() for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
                     if ">>> " in p.read_text() and p.name != "__main__.py"} - NOT_IMPORTED
    assert with_examples and with_examples <= collected, sorted(with_examples - collected)


# --------------------------------------------------------------------------- missing Label Studio
TINY_TESTS = '''
import pytest

pytestmark = pytest.mark.labelstudio


def test_needs_label_studio(label_studio):
    assert label_studio.url


def test_skips_itself():
    if {skip_itself}:
        pytest.skip("skipped by the test itself")
'''


def run_tiny(tmp_path, skip_itself=False, **env):
    test = tmp_path / "test_tiny.py"
    test.write_text(TINY_TESTS.format(skip_itself=skip_itself))
    args = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO),
            "-p", "tests.lsharness", str(test), "-k", "skips_itself" if skip_itself else "needs_label_studio"]
    return run(args, env=clean_env(PYTHONPATH=str(REPO), **env), timeout=120)


@pytest.mark.parametrize("env", [{"CI": "true"}, {"CI": "true", "ALLOW_SKIP_SERVICES": "1"}, {}],
                         ids=["ci", "ci-ignores-allow", "default"])
def test_missing_label_studio_fails_the_run(tmp_path, env):
    out = run_tiny(tmp_path, LS_BIN=str(tmp_path / "no-such-label-studio"), **env)
    assert out.returncode == 1, out.stdout
    assert "1 error" in out.stdout and "skipped" not in out.stdout
    assert "Label Studio 1.23.2 is not available" in out.stdout and "is not an executable" in out.stdout


def test_allow_skip_services_skips_and_says_why(tmp_path):
    out = run_tiny(tmp_path, LS_BIN=str(tmp_path / "no-such-label-studio"), ALLOW_SKIP_SERVICES="1")
    assert out.returncode == 0, out.stdout
    assert re.search(r"SKIPPED \[1\] .*Label Studio 1.23.2 is not available.*ALLOW_SKIP_SERVICES=1", out.stdout)


@pytest.mark.parametrize(("env", "status"), [({}, 1), ({"CI": "true", "ALLOW_SKIP_SERVICES": "1"}, 1),
                                             ({"ALLOW_SKIP_SERVICES": "1"}, 0)])
def test_a_label_studio_test_that_skips_itself_fails_the_run_too(tmp_path, env, status):
    out = run_tiny(tmp_path, skip_itself=True, **env, LS_BIN=str(tmp_path / "nothing"))
    assert out.returncode == status, out.stdout
    assert "SKIPPED [1]" in out.stdout and "skipped by the test itself" in out.stdout
    assert ("Label Studio test(s) were skipped" in out.stdout) == (status == 1)


# --------------------------------------------------------------------------- the install script
ENSURE = REPO / "tools" / "ensure_label_studio.sh"


def fake_label_studio_wheel(folder: Path) -> None:
    """A tiny wheel named label-studio 1.23.2 whose ``label-studio`` command answers ``--help``."""
    files = {
        "fake_label_studio.py": "def main():\n    print('usage: label-studio')\n",
        "label_studio-1.23.2.dist-info/METADATA": "Metadata-Version: 2.1\nName: label-studio\nVersion: 1.23.2\n",
        "label_studio-1.23.2.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                               "Tag: py3-none-any\n",
        "label_studio-1.23.2.dist-info/entry_points.txt": "[console_scripts]\nlabel-studio = fake_label_studio:main\n",
    }
    record = []
    with zipfile.ZipFile(folder / "label_studio-1.23.2-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(text.encode())}")
        record.append("label_studio-1.23.2.dist-info/RECORD,,")
        whl.writestr("label_studio-1.23.2.dist-info/RECORD", "\n".join(record) + "\n")


def test_install_failure_exits_nonzero_with_the_reason_and_leaves_nothing(tmp_path):
    ls_venv = tmp_path / "cache" / "label-studio-1.23.2"
    out = run(["bash", str(ENSURE)], env=clean_env(LS_VENV=str(ls_venv), PIP_NO_INDEX="1",
                                                    PIP_FIND_LINKS=str(tmp_path)))
    assert out.returncode == 1 and out.stdout == ""
    assert "pip install label-studio==1.23.2 failed" in out.stderr and "No matching distribution" in out.stderr
    assert sorted(p.name for p in ls_venv.parent.iterdir()) == ["label-studio-1.23.2.lock"]


def test_concurrent_installs_share_one_atomically_published_install(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_label_studio_wheel(wheels)
    ls_venv = tmp_path / "cache" / "label-studio-1.23.2"
    (ls_venv / "bin").mkdir(parents=True)  # a broken earlier install (a real folder, no command)
    (tmp_path / "cache" / "label-studio-1.23.2.abcdef").mkdir()  # leftover of an interrupted install
    env = clean_env(LS_VENV=str(ls_venv), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    procs = [subprocess.Popen(["bash", str(ENSURE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    assert [r[:2] for r in results] == [(0, f"{ls_venv}/bin/label-studio\n")] * 2, results
    assert sum("installing label-studio" in r[2] for r in results) == 1  # the other waited, then reused it
    assert ls_venv.is_symlink()
    installs = sorted(p.name for p in ls_venv.parent.iterdir() if p.name != "label-studio-1.23.2.lock")
    assert installs == ["label-studio-1.23.2", os.readlink(ls_venv)]
    assert run([str(ls_venv / "bin" / "label-studio"), "--help"]).stdout == "usage: label-studio\n"


# --------------------------------------------------------------------------- make test
def fake_venv(folder: Path, ruff_status: int = 0) -> Path:
    """A stand-in .venv whose ruff, mypy and python only log their call (python logs LS_BIN)."""
    log = folder / "calls.log"
    (folder / "bin").mkdir(parents=True)
    for tool, body in {"ruff": f"exit {ruff_status}", "mypy": "exit 0",
                       "python": 'echo "python $* LS_BIN=${LS_BIN:-}" >> ' + str(log)}.items():
        script = folder / "bin" / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {log}\n{body}\n")
        script.chmod(0o755)
    (folder / ".installed").touch()
    os.utime(folder / ".installed", (2**31 - 1, 2**31 - 1))  # newer than requirements.txt: no install
    return log


@pytest.mark.parametrize(("env", "ruff_status", "status", "pytest_ran"), [
    ({}, 0, 2, False),                                  # Label Studio cannot be installed: make test fails
    ({"CI": "true", "ALLOW_SKIP_SERVICES": "1"}, 0, 2, False),
    ({"ALLOW_SKIP_SERVICES": "1"}, 0, 0, True),         # local opt-in: pytest runs (and skips those tests)
    ({"ALLOW_SKIP_SERVICES": "1"}, 1, 2, False),        # a ruff error stops make test before pytest
], ids=["default", "ci", "allow-skip", "ruff-fails"])
def test_make_test_stops_when_lint_or_the_install_fails(tmp_path, env, ruff_status, status, pytest_ran):
    log = fake_venv(tmp_path / "venv", ruff_status)
    bin_dir = tmp_path / "bin"  # a python3 whose venv module is broken (the ensurepip failure seen on a fresh clone)
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("#!/bin/sh\necho 'Error: ensurepip failed' >&2\nexit 1\n")
    (bin_dir / "python3").chmod(0o755)
    out = run(["make", "-s", "test", f"VENV={tmp_path / 'venv'}"],
              env=clean_env(LS_VENV=str(tmp_path / "cache" / "ls"), PATH=f"{bin_dir}:{os.environ['PATH']}", **env))
    assert out.returncode == status, out.stderr
    assert ("python3 -m venv failed" in out.stderr) == (ruff_status == 0)
    calls = log.read_text().splitlines()
    assert calls[:2] == (["ruff", "mypy"] if ruff_status == 0 else ["ruff"])
    assert any(c.startswith("python -m pytest") for c in calls) == pytest_ran


# --------------------------------------------------------------------------- the image
def test_the_image_installs_every_package_and_only_the_runtime_dependencies():
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in PACKAGES:
        assert f"COPY {package}/ /src/{package}/" in dockerfile
    assert "pip install --no-cache-dir /src" in dockerfile and "-r requirements" not in dockerfile
    assert "[test]" not in dockerfile
    compose = (REPO / "docker-compose.yml").read_text()
    commands = re.findall(r'command: \["([^"]+)"', compose)
    assert "llm-prelabel" in commands and set(commands) <= {"llm-prelabel", "redis-server"}
    assert "llm-prelabel" in PYPROJECT["project"]["scripts"]


def test_the_example_label_config_is_the_demo_datasets():
    """The README tells users to paste label-config.example.xml, which goes with prompts.example.yaml:
    it must stay the config the demo and the tests use."""
    from fakellm.dataset import LABEL_CONFIG

    with open(REPO / "label-config.example.xml", encoding="utf-8") as fh:
        assert fh.read().strip() == LABEL_CONFIG.strip()
