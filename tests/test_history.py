"""Run history: SQLite and Redis stores, ordering, trends, persistence across processes, and the command."""
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from redis import Redis

from core.settings import Settings
from scoring.commands import history as history_cmd
from scoring.history import RedisHistory, SQLiteHistory, open_history, run_from_report, with_deltas

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def run(version, score, minutes, project="p1", reference="ground_truth", **extra):
    return {"project": project, "version": version, "reference": reference, "score": score,
            "started_at": T0 + timedelta(minutes=minutes) - timedelta(seconds=5),
            "finished_at": T0 + timedelta(minutes=minutes), "n_tasks": 10, "n_skipped": 1,
            "per_control": {"c": score}, "cost": {"usd": 0.01 * minutes, "usd_per_task": 0.001}, **extra}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SQLiteHistory(str(tmp_path / "history.sqlite3"))
        return
    conn = Redis.from_url(REDIS_URL)
    prefix = f"test:history:{uuid.uuid4().hex}"
    yield RedisHistory(conn, prefix=prefix)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


def test_add_list_newest_first_and_filters(store):
    ids = [store.add(run("v1", 0.5, 1)), store.add(run("v2", 0.6, 2)), store.add(run("v1", 0.7, 3)),
           store.add(run("v1", 0.1, 4, project="other"))]
    assert len(set(ids)) == 4
    runs = store.list("p1")
    assert [r["run_id"] for r in runs] == [ids[2], ids[1], ids[0]]
    assert runs[0]["finished_at"] == "2026-01-01T12:03:00+00:00"
    assert runs[0]["per_control"] == {"c": 0.7} and runs[0]["cost"]["usd"] == pytest.approx(0.03)
    assert [r["score"] for r in store.list("p1", version="v1")] == [0.7, 0.5]
    assert len(store.list("p1", limit=2)) == 2
    assert store.list("nothing") == []
    assert store.list(" p1".strip(), version="v9") == []


def test_trend_and_deltas(store):
    store.add(run("v1", 0.5, 1))
    store.add(run("v1", 0.8, 3))
    store.add(run("v2", 0.6, 2))
    store.add(run("v2", 0.9, 4, reference="v1"))
    trend = store.trend("p1")
    assert trend == {
        "v1": [("2026-01-01T12:01:00+00:00", 0.5), ("2026-01-01T12:03:00+00:00", 0.8)],
        "v2": [("2026-01-01T12:02:00+00:00", 0.6)],
        "v2 vs v1": [("2026-01-01T12:04:00+00:00", 0.9)],
    }
    deltas = {(r["version"], r["reference"], r["score"]): r["delta"] for r in with_deltas(store.list("p1"))}
    assert deltas[("v1", "ground_truth", 0.8)] == pytest.approx(0.3)
    assert deltas[("v1", "ground_truth", 0.5)] is None
    assert deltas[("v2", "v1", 0.9)] is None   # a different series from v2 vs ground truth


def test_clear(store):
    store.add(run("v1", 0.5, 1))
    store.add(run("v1", 0.5, 2, project="keep"))
    assert store.clear("p1") == 1
    assert store.list("p1") == [] and len(store.list("keep")) == 1


def test_bad_run_is_refused(store):
    from core.errors import ScoringError

    with pytest.raises(ScoringError, match="needs project"):
        store.add({"version": "v1"})


ADD_IN_CHILD = """
import sys
from core.settings import Settings
from scoring.history import open_history
h = open_history(Settings(data_dir=sys.argv[1], redis_url=sys.argv[2] or None), prefix=sys.argv[3])
print(h.add({"project": sys.argv[4], "version": "v1", "score": 0.75, "finished_at": "2026-02-02T00:00:00Z"}))
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_history_survives_process_restart(tmp_path, backend):
    """A run added by one process is read back by a fresh store in another."""
    redis_url = REDIS_URL if backend == "redis" else ""
    prefix = f"test:history:{uuid.uuid4().hex}"
    project = f"proj-{uuid.uuid4().hex[:6]}"
    out = subprocess.run([sys.executable, "-c", ADD_IN_CHILD, str(tmp_path), redis_url, prefix, project],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    try:
        h = open_history(Settings(data_dir=str(tmp_path), redis_url=redis_url or None), prefix=prefix)
        assert isinstance(h, RedisHistory if redis_url else SQLiteHistory)
        runs = h.list(project)
        expected = [(run_id, 0.75, "2026-02-02T00:00:00+00:00")]
        assert [(r["run_id"], r["score"], r["finished_at"]) for r in runs] == expected
        if backend == "sqlite":
            assert (tmp_path / "history.sqlite3").exists()
    finally:
        if redis_url:
            conn = Redis.from_url(redis_url)
            keys = list(conn.scan_iter(f"{prefix}:*"))
            if keys:
                conn.delete(*keys)


def test_run_from_report():
    report = {"version": "v3", "reference": "v1", "score": 0.61, "n_tasks": 14, "n_compared": 12, "n_skipped": 2,
              "per_control": {"a": {"metric": "exact", "score": 0.5, "n": 12}},
              "kappa": {"a": 0.2}, "alpha": {"a": 0.19},
              "cost": {"usd": 0.3, "usd_per_task": 0.025, "projected_usd": 2.5, "input_tokens": 100, "notes": ["x"]},
              "tasks": [{"id": 1}]}
    r = run_from_report(report, project=9, started_at=T0, finished_at=T0 + timedelta(seconds=3), write_back=True)
    assert r["project"] == "9" and r["reference"] == "v1" and r["per_control"] == {"a": 0.5}
    assert (r["n_tasks"], r["n_compared"], r["n_skipped"]) == (14, 12, 2)
    assert r["cost"] == {"usd": 0.3, "usd_per_task": 0.025, "projected_usd": 2.5, "input_tokens": 100}
    assert r["started_at"] == "2026-01-01T12:00:00+00:00" and r["write_back"] is True
    assert "tasks" not in r


def _cli(tmp_path, capsys, *argv):
    import argparse

    parser = argparse.ArgumentParser()
    history_cmd.add_arguments(parser)
    args = parser.parse_args(list(argv))
    code = history_cmd.run(args, Settings(data_dir=str(tmp_path)))
    return code, capsys.readouterr().out


def test_history_command_table_and_json(tmp_path, capsys):
    h = open_history(Settings(data_dir=str(tmp_path)))
    h.add(run("v1", 0.50, 1))
    h.add(run("v2", 0.60, 2))
    h.add(run("v1", 0.55, 3))
    h.add(run("v1", 0.52, 4))
    code, out = _cli(tmp_path, capsys, "--project", "p1")
    assert code == 0
    lines = out.splitlines()
    table = [line for line in lines if line.startswith("2026-")]
    assert len(table) == 4
    assert "0.520" in table[0] and "↓ -0.030" in table[0]       # newest first
    assert "0.550" in table[1] and "↑ +0.050" in table[1]
    assert "v1" in out and "0.500 → 0.520" in out and "3 runs" in out

    code, out = _cli(tmp_path, capsys, "--project", "p1", "--version", "v2", "--json")
    data = json.loads(out)
    assert code == 0 and [(r["version"], r["score"], r["delta"]) for r in data["runs"]] == [("v2", 0.6, None)]
    assert data["trend"]["v2"] == [["2026-01-01T12:02:00+00:00", 0.6]]

    code, out = _cli(tmp_path, capsys, "--project", "nope")
    assert code == 0 and "no scoring runs" in out


def test_a_run_added_while_redis_is_down_is_spooled_and_replayed_once(tmp_path):
    """Issue 8 finding 14: a history entry that cannot reach Redis is kept and replayed, not lost."""
    from core.spool import KINDS, RedisLink, redis_link

    prefix = f"test:history:{uuid.uuid4().hex}"
    down = Settings(redis_url="redis://127.0.0.1:1/0", spool_dir=str(tmp_path / "spool"), redis_timeout=0.3,
                    redis_retry_after=60)
    run_id = open_history(down, prefix=prefix).add(run("v1", 0.8, 1))
    spool = redis_link(down).spool
    assert run_id and spool.counts() == {"history": 1}
    payloads = [p for _, _, p in spool.take(["history"])]
    conn = Redis.from_url(REDIS_URL)
    try:
        up = RedisLink(Settings(redis_url=REDIS_URL, spool_dir=str(tmp_path / "spool")))
        assert up.replay() == 0 and up.replayed == 1 and spool.counts() == {}
        KINDS["history"].replay(conn, None, payloads)      # a second replay changes nothing
        runs = RedisHistory(conn, prefix=prefix).list("p1")
        assert [(r["run_id"], r["score"]) for r in runs] == [(run_id, 0.8)]
    finally:
        keys = list(conn.scan_iter(f"{prefix}:*"))
        if keys:
            conn.delete(*keys)
