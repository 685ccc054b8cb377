"""Usage ledger (SQLite and Redis) and the price table."""
from __future__ import annotations

import multiprocessing
import threading
import uuid
from types import MappingProxyType

import pytest
from redis import Redis

from backend.ledger import SQLiteLedger, UsageRecord, make_record, open_ledger
from backend.ledger_redis import RedisLedger
from backend.pricing import PRICES, cost_usd, lookup, price_for
from backend.providers.base import Usage
from backend.versions import Price, PromptVersion
from core.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis(prefix: str) -> RedisLedger:
    return RedisLedger(REDIS_URL, prefix=prefix)


@pytest.fixture
def redis_prefix():
    prefix = f"test-ledger:{uuid.uuid4().hex}"
    yield prefix
    _redis(prefix).delete_all()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path, redis_prefix):
    """(open, name): ``open()`` returns a new ledger on the same store, as a restarted process would."""
    if request.param == "sqlite":
        path = str(tmp_path / "nested" / "ledger.sqlite3")
        return (lambda: SQLiteLedger(path)), "sqlite"
    return (lambda: _redis(redis_prefix)), "redis"


def rec(task, latency, *, version="v1", project="7", usd=0.001, status="ok", tin=100, tout=20, ts=1000.0):
    return UsageRecord(version=version, task_id=task, project=project, provider="openai", model="gpt-4o-mini",
                       input_tokens=tin, output_tokens=tout, usd=usd, latency_s=latency, status=status, ts=ts)


# --- durability and summary ------------------------------------------------------------------

def test_survives_a_restart(backend):
    open_, _ = backend
    led = open_()
    written = [rec(1, 0.5, ts=1000.0), rec(2, 0.7, usd=None, status="truncated", ts=1001.5),
               rec("t-3", 0.2, project=None, ts=1002.0)]
    led.record(written[0])
    led.record_many(written[1:])
    led.close()
    again = open_()
    assert again.records("v1") == written
    assert again.versions() == ["v1"]
    assert again.summary("v1")["calls"] == 3
    again.close()


def test_summary_figures(backend):
    open_, _ = backend
    led = open_()
    # 10 calls on 8 distinct tasks, latencies 0.1..1.0, two errors, one call with unknown price
    recs = [rec(i % 8, round(0.1 * (i + 1), 1), usd=0.002, tin=100 + i, tout=10, ts=2000.0 + i) for i in range(10)]
    recs[3].status = "truncated"
    recs[6].status = "rate_limited"
    recs[9].usd = None
    recs[9].project = "8"
    led.record_many(recs)
    s = led.summary("v1")
    assert s["calls"] == 10 and s["tasks"] == 8
    assert s["input_tokens"] == sum(100 + i for i in range(10)) and s["output_tokens"] == 100
    assert s["usd"] == pytest.approx(0.018) and s["usd_complete"] is False
    assert s["errors"] == {"truncated": 1, "rate_limited": 1}
    # nearest rank: p50 = 5th of 10 sorted values, p95 = 10th
    assert s["latency_p50"] == pytest.approx(0.5) and s["latency_p95"] == pytest.approx(1.0)
    assert s["first_ts"] == 2000.0 and s["last_ts"] == 2009.0
    p7 = led.summary("v1", project="7")
    assert p7["calls"] == 9 and p7["usd_complete"] is True and p7["usd"] == pytest.approx(0.018)
    assert p7["latency_p95"] == pytest.approx(0.9) and p7["last_ts"] == 2008.0
    p8 = led.summary("v1", project="8")
    assert p8["calls"] == 1 and p8["usd"] is None and p8["usd_complete"] is False
    assert [r.task_id for r in led.records("v1", project="8")] == [1]
    led.close()


def test_empty_summary_and_versions_per_project(backend):
    open_, _ = backend
    led = open_()
    s = led.summary("nothing")
    assert s["calls"] == 0 and s["tasks"] == 0 and s["usd"] is None and s["latency_p50"] is None
    led.record_many([rec(1, 0.1, version="b"), rec(1, 0.1, version="a"), rec(2, 0.1, version="c", project="9")])
    assert led.versions() == ["a", "b", "c"]
    assert led.versions(project="7") == ["a", "b"] and led.versions(project="9") == ["c"]
    assert led.records("a", project="9") == []
    led.close()


def test_threads_write_concurrently(backend):
    open_, _ = backend
    led = open_()

    def work(t):
        for i in range(25):
            led.record(rec(f"{t}-{i}", 0.01 * i, version="conc"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = led.summary("conc")
    assert s["calls"] == 200 and s["tasks"] == 200 and s["input_tokens"] == 200 * 100
    led.close()


def _write_from_process(kind: str, where: str, worker: int) -> None:
    led = SQLiteLedger(where) if kind == "sqlite" else _redis(where)
    for i in range(40):
        led.record(rec(f"{worker}-{i}", 0.1, version="procs"))
    led.close()


def test_processes_write_concurrently(backend, tmp_path, redis_prefix):
    _, kind = backend
    where = str(tmp_path / "nested" / "ledger.sqlite3") if kind == "sqlite" else redis_prefix
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_from_process, args=(kind, where, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    led = SQLiteLedger(where) if kind == "sqlite" else _redis(where)
    assert led.summary("procs")["calls"] == 120 and len(led.records("procs")) == 120
    led.close()


def test_open_ledger_picks_the_store(tmp_path, redis_prefix):
    led = open_ledger(Settings(data_dir=str(tmp_path / "a" / "b")))
    assert isinstance(led, SQLiteLedger) and (tmp_path / "a" / "b" / "ledger.sqlite3").exists()
    led.close()
    led = open_ledger(Settings(redis_url=REDIS_URL), prefix=redis_prefix)
    assert isinstance(led, RedisLedger)
    led.record(rec(1, 0.1))
    assert _redis(redis_prefix).summary("v1")["calls"] == 1


def test_unreachable_redis_is_a_config_error():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL"):
        RedisLedger("redis://127.0.0.1:1/0")


def test_make_record_prices_the_call():
    v = PromptVersion("v1", "openai", "gpt-4o-mini-2024-07-18", "{text}")
    r = make_record(v, 5, 7, Usage(input_tokens=2000, output_tokens=1000, latency_s=0.3), status="ok", ts=5.0)
    assert r == UsageRecord("v1", 5, "7", "openai", "gpt-4o-mini-2024-07-18", 2000, 1000,
                            pytest.approx(2000 * 0.15 / 1e6 + 1000 * 0.60 / 1e6), 0.3, "ok", 5.0)
    local = PromptVersion("l", "openai-compatible", "llama3.1:8b", "{text}")
    assert make_record(local, 5, None, Usage(10, 10)).usd is None      # unknown price: not invented
    free = PromptVersion("l", "openai-compatible", "llama3.1:8b", "{text}", price=Price(0, 0))
    assert make_record(free, 5, None, Usage(10, 10)).usd == 0.0        # free only when the version says so
    failed = make_record(v, 6, None, None, status="auth")
    assert failed.input_tokens == 0 and failed.usd == 0.0 and failed.status == "auth"


# --- prices --------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,expected", [
    ("gpt-4o", Price(2.5, 10.0)),
    ("gpt-4o-2024-08-06", Price(2.5, 10.0)),
    ("gpt-4o-mini-2024-07-18", Price(0.15, 0.6)),
    ("gpt-4.1-nano-2025-04-14", Price(0.1, 0.4)),
    ("gpt-5-mini-2025-08-07", Price(0.25, 2.0)),
    ("o4-mini-2025-04-16", Price(1.1, 4.4)),
    ("claude-sonnet-4-5-20250929", Price(3.0, 15.0)),
    ("claude-opus-4-1-20250805", Price(15.0, 75.0)),
    ("claude-opus-4-5-20251101", Price(5.0, 25.0)),
    ("claude-opus-4-20250514", Price(15.0, 75.0)),
    ("claude-3-5-haiku-latest", Price(0.8, 4.0)),
    ("claude-haiku-4-5@20251001", Price(1.0, 5.0)),
    ("openai/gpt-4.1-mini", Price(0.4, 1.6)),
    ("GPT-4o", Price(2.5, 10.0)),
])
def test_lookup_known_models_and_snapshots(model, expected):
    assert lookup(model) == expected


@pytest.mark.parametrize("model", ["gpt-4o-audio-preview", "gpt-4o-mini-tts", "llama3.1:8b", "claude-opus-9",
                                   "gpt-4", "mistral-large-latest", ""])
def test_unknown_models_have_no_price(model):
    assert lookup(model) is None


def test_table_covers_the_common_models():
    for name in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini", "gpt-5",
                 "gpt-5-mini", "gpt-5-nano", "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5",
                 "claude-opus-4", "claude-sonnet-4", "claude-3-5-haiku", "claude-3-5-sonnet"]:
        assert name in PRICES
    assert all(p.input > 0 and p.output >= p.input for p in PRICES.values())


def test_version_price_override_wins():
    v = PromptVersion("v", "openai", "gpt-4o", "{text}", params=MappingProxyType({}), price=Price(1.0, 2.0))
    assert price_for(v) == Price(1.0, 2.0)
    assert price_for(PromptVersion("v", "openai", "gpt-4o", "{text}")) == Price(2.5, 10.0)


def test_cost_usd():
    assert cost_usd(Usage(1_000_000, 1_000_000), Price(2.5, 10.0)) == 12.5
    assert cost_usd(Usage(1234, 567), Price(0.15, 0.60)) == pytest.approx(0.0005253)
    assert cost_usd(Usage(10, 10), None) is None


# --- issue 8 finding 19: what each answer lost or had guessed is kept and totalled ----------------

def test_dropped_and_repaired_are_recorded_and_totalled(backend):
    open_, _ = backend
    led = open_()
    recs = [rec(1, 0.1), rec(2, 0.2), rec(3, 0.3, project="8"), rec(4, 0.4, status="all_dropped")]
    recs[0].dropped, recs[0].notes = {"spans": 2, "labels": 1}, ["ner: passage not found in the text: 'Carol'"]
    recs[1].repaired, recs[1].notes = 1, ["topic: path ['Sport', 'Optics'] is not in the taxonomy; guessed as ..."]
    recs[2].dropped, recs[2].repaired = {"boxes": 1}, 2
    recs[3].dropped = {"labels": 3}
    led.record_many(recs)
    led.close()
    again = open_()
    assert again.records("v1") == recs  # the fields survive a restart, in both stores
    s = again.summary("v1")
    assert s["dropped"] == {"boxes": 1, "labels": 4, "spans": 2} and s["repaired"] == 3
    assert s["errors"] == {"all_dropped": 1}
    p7 = again.summary("v1", project="7")
    assert p7["dropped"] == {"labels": 4, "spans": 2} and p7["repaired"] == 1
    assert again.summary("nothing")["dropped"] == {} and again.summary("nothing")["repaired"] == 0
    again.close()


OLD_SCHEMA = """
CREATE TABLE usage (id INTEGER PRIMARY KEY, version TEXT NOT NULL, task_id, project TEXT, provider TEXT NOT NULL,
    model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, usd REAL,
    latency_s REAL NOT NULL, status TEXT NOT NULL, ts REAL NOT NULL);
INSERT INTO usage (version, task_id, project, provider, model, input_tokens, output_tokens, usd, latency_s, status, ts)
    VALUES ('v1', 1, '7', 'openai', 'gpt-4o-mini', 100, 20, 0.001, 0.5, 'ok', 1000.0);
"""


def test_an_older_sqlite_ledger_gets_the_new_columns(tmp_path):
    import sqlite3

    path = str(tmp_path / "ledger.sqlite3")
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    led = SQLiteLedger(path)
    assert led.records("v1") == [rec(1, 0.5, tin=100, tout=20, ts=1000.0)]  # old rows: nothing dropped
    new = rec(2, 0.1)
    new.dropped, new.repaired, new.notes = {"spans": 1}, 1, ["a note"]
    led.record(new)
    s = led.summary("v1")
    assert s["calls"] == 2 and s["dropped"] == {"spans": 1} and s["repaired"] == 1
    led.close()
    again = SQLiteLedger(path)  # the migration is idempotent
    assert again.records("v1")[1] == new
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(usage)")]
    assert columns[-4:] == ["dropped", "repaired", "notes", "rid"]
    again.close()


# --- Redis down: spooled records, replayed once (issue 8 findings 4 and 14) --------------------
DOWN_URL = "redis://127.0.0.1:1/0"   # nothing listens there: connection refused at once


def _down(tmp_path) -> Settings:
    return Settings(redis_url=DOWN_URL, spool_dir=str(tmp_path / "spool"), redis_timeout=0.3, redis_retry_after=60)


def _replay_into_shared_redis(tmp_path) -> int:
    """Replay the spool under ``tmp_path`` into the shared Redis (the entries carry their key prefix)."""
    from core.spool import RedisLink

    link = RedisLink(Settings(redis_url=REDIS_URL, spool_dir=str(tmp_path / "spool"), redis_retry_after=0.1))
    assert link.replay() == 0
    return link.replayed


def test_a_record_written_twice_counts_once(redis_prefix):
    led = _redis(redis_prefix)
    r = rec(1, 0.5)
    led.record(r)
    led.record_many([r, rec(2, 0.5)])      # r again: a replay of a write that reached Redis after all
    assert led.summary("v1")["calls"] == 2 and [x.task_id for x in led.records("v1")] == [1, 2]


def test_records_written_while_redis_is_down_are_spooled_and_replayed_once(tmp_path, redis_prefix):
    from core.spool import KINDS, redis_link

    led = open_ledger(_down(tmp_path), prefix=redis_prefix)     # starts although Redis is unreachable
    written = [rec(i, 0.1 * i) for i in range(5)]
    led.record(written[0])
    led.record_many(written[1:])                                 # no error: kept on disk
    spool = redis_link(_down(tmp_path)).spool
    assert spool.counts() == {"ledger": 5}
    payloads = [p for _, _, p in spool.take(["ledger"])]
    assert _replay_into_shared_redis(tmp_path) == 5 and spool.counts() == {}
    KINDS["ledger"].replay(Redis.from_url(REDIS_URL), None, payloads)   # replayed again (crash before removal)
    assert _redis(redis_prefix).records("v1") == written
    assert _redis(redis_prefix).summary("v1")["calls"] == 5


def test_sqlite_ledger_keeps_record_ids_and_opens_files_without_them(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.sqlite3")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE usage (id INTEGER PRIMARY KEY, version TEXT NOT NULL, task_id, project TEXT, "
                "provider TEXT NOT NULL, model TEXT NOT NULL, input_tokens INTEGER NOT NULL, "
                "output_tokens INTEGER NOT NULL, usd REAL, latency_s REAL NOT NULL, status TEXT NOT NULL, "
                "ts REAL NOT NULL)")
    old.execute("INSERT INTO usage VALUES (1, 'v1', 1, '7', 'openai', 'm', 1, 1, NULL, 0.1, 'ok', 1.0)")
    old.commit()
    old.close()
    led = SQLiteLedger(path)
    new = rec(2, 0.2)
    led.record(new)
    got = led.records("v1")
    assert [r.task_id for r in got] == [1, 2] and got[1].rid == new.rid and got[0].rid
    led.close()
