"""`history` with no runs says where it looked (the SQLite file, or Redis with its password masked)."""
from scoring.cli import main


def test_history_without_runs_names_the_sqlite_file(tmp_path, monkeypatch, capsys):
    for name in ("REDIS_URL", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert main(["history", "--project", "7"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"no scoring runs recorded for project 7 in the SQLite history {tmp_path}/history.sqlite3 "
                   f"(no REDIS_URL set; DATA_DIR={tmp_path})")


def test_history_without_runs_names_redis_without_its_password(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0")
    assert main(["history", "--project", "987654321", "--version", "nope"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == ("no scoring runs recorded for project 987654321 and version nope in the Redis history at "
                   "redis://***@127.0.0.1:6379/0 (REDIS_URL)")
    assert "s3cret" not in out
