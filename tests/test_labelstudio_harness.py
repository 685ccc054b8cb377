"""The real-Label-Studio harness itself: start, token, busy port, stop by PID."""
from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import httpx
import pytest

from core.labelstudio import LabelStudioClient
from tests.fixtures.ls_export import make_fixture
from tests.lsharness import LabelStudioServer, find_binary, prepare_data_dir

pytestmark = pytest.mark.labelstudio
FIXTURE = Path(make_fixture.__file__).parent


def test_session_server_answers_with_our_token(label_studio):
    who = httpx.get(label_studio.url + "/api/current-user/whoami",
                    headers={"Authorization": f"Token {label_studio.token}"}, timeout=10)
    assert who.status_code == 200
    assert who.json()["email"] == label_studio.username
    assert label_studio.url.startswith("http://127.0.0.1:")


def test_busy_port_is_followed_and_stop_kills_only_our_process(tmp_path):
    binary = find_binary()
    prepare_data_dir(binary, tmp_path)
    blocker = socket.socket()  # someone else's server on the port we ask for: accepts, then hangs up
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(64)
    busy = blocker.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = blocker.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        server = LabelStudioServer(binary, tmp_path, port=busy)
        server.start()
        pid = server.proc.pid
        try:
            assert server.port != busy  # moved on (Label Studio itself, or the harness retried)
            assert httpx.get(server.url + "/health", timeout=5).json() == {"status": "UP"}
        finally:
            server.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        blocker.close()


def test_fixture_export_matches_a_fresh_export(label_studio):
    """The committed export.json has the shape a fresh snapshot export of build_project has."""
    client = LabelStudioClient(label_studio.settings())
    project_id, ids = make_fixture.build_project(client.sdk)
    fresh, _ = client.pull_project(project_id, progress=False)
    committed = json.loads((FIXTURE / "export.json").read_text())
    assert (FIXTURE / "config.xml").read_text() == make_fixture.CONFIG

    def digest(tasks):
        out = {}
        for t in tasks:
            out[t["data"]["ref"]] = (
                [(a["ground_truth"], a["result"]) for a in t["annotations"]],
                sorted((p["model_version"], json.dumps(p["result"], sort_keys=True)) for p in t["predictions"]),
            )
        return out

    assert digest(fresh) == digest(committed)
    assert len(committed) == 20
    by_ref = {t["data"]["ref"]: t for t in committed}
    assert by_ref["t19"]["annotations"] == []
    assert [p["model_version"] for p in by_ref["t20"]["predictions"]] == ["v-cheap"]
    assert all(a["ground_truth"] for t in committed for a in t["annotations"])
