"""``python -m demo``: the live loop in a real Label Studio (``--no-wait``), the cost guard, and ``--offline``."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.labelstudio import LabelStudioClient
from core.settings import Settings
from demo.stack import ADMIN, VERSIONS
from tests.lsharness import LabelStudioServer, find_binary, skipping_allowed

REPO = Path(__file__).resolve().parent.parent
STRONG, CHEAP = VERSIONS[0].id, VERSIONS[1].id


def demo_env(**extra: str) -> dict[str, str]:
    """The environment without provider keys or Redis (the offline simulation), plus ``extra``."""
    drop = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "REDIS_URL", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def run_demo(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def group_alive(pgid: int) -> list[int]:
    """PIDs (not zombies) still in process group ``pgid``, from ``/proc``."""
    alive = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(entry))
    return alive


@pytest.fixture
def ls_binary() -> str:
    try:
        return find_binary()
    except RuntimeError as exc:
        if skipping_allowed():
            pytest.skip(f"Label Studio 1.23.2 is not available: {exc} (skipped: ALLOW_SKIP_SERVICES=1)")
        pytest.fail(f"Label Studio 1.23.2 is not available: {exc}", pytrace=False)


@pytest.mark.labelstudio
def test_live_demo_runs_the_loop_in_label_studio_and_stops_everything(tmp_path, ls_binary):
    out = run_demo("--no-wait", "--tasks", "12", "--data-dir", str(tmp_path), "--port", "0", "--backend-port", "0",
                   env=demo_env(LS_BIN=ls_binary))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "OFFLINE SIMULATION" in text
    url = re.search(r"Label Studio: (http://127\.0\.0\.1:\d+)/projects/(\d+)/data", text)
    assert url, text
    assert f"log in as {ADMIN.username} / {ADMIN.password}" in text
    assert f'"★ {STRONG} vs GT"' in text or f'"★ {CHEAP} vs GT"' in text   # the active evaluation's tab
    assert "versions against ground_truth" in text and "Stopped every process the demo started." in text
    pid = int(re.search(r"\(pid (\d+);", text).group(1))
    assert group_alive(pid) == []  # Label Studio and anything it spawned are gone
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    # Again, on the same data directory, waiting for Ctrl-C: everything is reused and stays up.
    log = tmp_path / "second-run.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "demo", "--tasks", "12", "--data-dir", str(tmp_path),
                                 "--port", "0", "--backend-port", "0"], cwd=REPO, env=demo_env(LS_BIN=ls_binary),
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "Running until Ctrl-C" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        second = log.read_text()
        assert "Running until Ctrl-C" in second, second[-3000:]
        assert "reused (12 reviews" in second and "data in" in second and "reused)" in second
        check_label_studio(re.search(r"Label Studio: (http://127\.0\.0\.1:\d+)/projects/(\d+)/data", second))
        pid = int(re.search(r"\(pid (\d+);", second).group(1))
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Stopped every process the demo started." in log.read_text()
    assert group_alive(pid) == []


def check_label_studio(found) -> None:
    """What the demo made in Label Studio: project, both versions' predictions, evaluations, tabs, connection."""
    assert found
    client = LabelStudioClient(Settings(label_studio_url=found.group(1), label_studio_api_key=ADMIN.token))
    pid = int(found.group(2))
    assert client.project(pid)["title"] == "Demo reviews (offline simulation)"
    counts = client.model_version_counts(pid)
    assert counts[STRONG] == 12 and counts[CHEAP] == 12, counts
    assert counts[f"eval({STRONG} vs ground_truth)"] == 6 and counts[f"eval({CHEAP} vs ground_truth)"] == 6
    tabs = {v["title"] for v in client.views(pid)}
    active = {f"★ {STRONG} vs GT", f"★ {CHEAP} vs GT"} & tabs
    inactive = {f"☆ {STRONG} vs GT (inactive)", f"☆ {CHEAP} vs GT (inactive)"} & tabs
    assert len(active) == 1 and len(inactive) == 1 and "Default" in tabs, tabs
    assert client.project(pid)["model_version"].startswith("eval(")
    [ml] = client.sdk.ml.list(project=pid)
    assert ml.title == f"LLM pre-labels: {STRONG}"
    assert json.loads(ml.extra_params) == {"version": STRONG}  # a JSON string, not "[object Object]"


def test_real_models_need_yes_before_anything_starts(tmp_path):
    out = run_demo("--no-wait", "--data-dir", str(tmp_path / "demo"),
                   env=demo_env(OPENAI_API_KEY="sk-not-a-real-key", LS_BIN="/nonexistent/label-studio"), timeout=120)
    assert out.returncode == 2
    assert "REAL models and spends money" in out.stdout
    assert "pass --yes" in out.stderr
    assert not (tmp_path / "demo").exists()  # nothing was started or created


def test_offline_demo_is_still_there(tmp_path):
    out = run_demo("--offline", "--tasks", "6", "--out", str(tmp_path / "out"), env=demo_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Quality against ground truth (6 tasks)" in out.stdout
    assert (tmp_path / "out" / "report.html").exists()


def test_a_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    """Label Studio is started *in* its data dir: a relative LABEL_STUDIO_BASE_DATA_DIR made it create a second,
    empty database nested inside (var/demo/label-studio/var/demo/label-studio), migrated on every fresh start."""
    monkeypatch.chdir(tmp_path)
    env = LabelStudioServer("label-studio", "var/demo/label-studio", port=1).env()
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path / "var" / "demo" / "label-studio")


def test_fresh_removes_only_what_the_demo_made_and_a_missing_label_studio_points_to_offline(tmp_path):
    (tmp_path / "label-studio").mkdir()
    (tmp_path / "label-studio" / "label_studio.sqlite3").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    out = run_demo("--no-wait", "--fresh", "--data-dir", str(tmp_path),
                   env=demo_env(LS_BIN=str(tmp_path / "no-such-label-studio")), timeout=120)
    assert out.returncode == 2
    assert "is not an executable" in out.stderr and "python -m demo --offline" in out.stderr
    assert not (tmp_path / "label-studio").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
