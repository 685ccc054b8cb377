"""The lock that keeps identical write-backs apart (``core.locks``), and that the CLI takes the same one as the
worker (issue 8 finding 16).

Redis at 127.0.0.1:6379 with unique project ids (lock keys) per test; no Label Studio is needed: a run that gets
the lock goes on to ask Label Studio at a closed port, so "it got past the lock" shows as a Label Studio error.
The write-back races against a real Label Studio are in tests/test_labelstudio_writeback.py.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis import Redis

from core.locks import LockBusy, file_exclusive, hold, lock_path
from scoring.jobs import lock_key

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pid():
    return random.randrange(10**8, 10**9)   # a project id no other test uses: the lock key is ours


def score_cli(pid: int, tmp_path: Path, *extra: str, redis: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABEL_STUDIO_URL": f"http://127.0.0.1:{closed_port()}",
           "LABEL_STUDIO_API_KEY": "secret-key-123", "DATA_DIR": str(tmp_path / "var")}
    env.pop("REDIS_URL", None)
    if redis:
        env["REDIS_URL"] = REDIS_URL
    return subprocess.run([sys.executable, "-m", "scoring", "score", "--project", str(pid), "--version", "v1",
                           "--write-back", "--no-progress", *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def one_error_line(p) -> str:
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "file"])
def test_cli_write_back_takes_the_lock_the_worker_takes(pid, tmp_path, redis):
    key = lock_key(pid, "v1", "ground_truth")   # what score_job's runs lock (scoring.jobs.lock_key)
    conn = Redis.from_url(REDIS_URL) if redis else None
    try:
        with hold(key, connection=conn, directory=str(tmp_path / "var"), wait=0) as kind:
            assert kind == ("redis" if redis else "file")
            busy = score_cli(pid, tmp_path, "--no-wait", redis=redis)
            assert one_error_line(busy) == (
                f"error: another scoring run of project {pid} version v1 against ground_truth is running (it holds "
                f"the lock {key}); try again when it has finished")
            started = time.monotonic()
            waited = score_cli(pid, tmp_path, "--wait", "1.5", redis=redis)
            assert time.monotonic() - started >= 1.5
            assert "has held the lock" in one_error_line(waited) and "for over 1.5 s" in waited.stderr
            assert (f"waiting for the scoring run of project {pid} version v1 against ground_truth that holds the "
                    f"lock {key} (up to 1.5 s)") in waited.stderr
        # free: the run gets past the lock and fails at Label Studio (closed port), releasing the lock
        free = score_cli(pid, tmp_path, "--no-wait", redis=redis)
        assert "Label Studio at http://127.0.0.1:" in one_error_line(free) and "secret-key-123" not in free.stderr
        if redis:
            assert not conn.exists(key)
    finally:
        if conn is not None:
            conn.delete(key)
            conn.close()


def test_file_lock_is_freed_when_its_holder_dies(tmp_path):
    path = lock_path(str(tmp_path), "llm-prelabel:lock:1:v1:ground_truth")
    ready = tmp_path / "ready"
    code = ("import sys, time; from pathlib import Path; from core.locks import file_exclusive\n"
            f"with file_exclusive({path!r}, wait=0):\n    Path({str(ready)!r}).write_text('x'); time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(LockBusy, match="is running"):
            with file_exclusive(path, wait=0):
                pass
        os.kill(child.pid, signal.SIGKILL)   # a crash: the kernel drops its flock
        child.wait(10)
        with file_exclusive(path, wait=5):
            assert Path(path).read_text().strip() == str(os.getpid())
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


def test_a_second_holder_waits_logs_and_gets_the_lock_in_turn(tmp_path, caplog):
    """Threads of one process are excluded too (each takes its own flock); the second logs that it waits."""
    path = lock_path(str(tmp_path), "k")
    events, a_in = [], threading.Event()

    def a():
        with file_exclusive(path, wait=0, what="run A"):
            events.append("A in")
            a_in.set()
            time.sleep(0.5)
            events.append("A out")

    ta = threading.Thread(target=a)
    ta.start()
    a_in.wait(10)
    with caplog.at_level(logging.INFO, logger="core.locks"):
        with file_exclusive(path, wait=30, what="run A", key="k"):
            events.append("B in")
    ta.join(10)
    assert events == ["A in", "A out", "B in"]
    assert "waiting for the run A that holds the lock k (up to 30 s)" in caplog.text
