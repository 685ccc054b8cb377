"""Usage ledger throughput: write 10,000 records (batches of 100, as /predict does) and read a summary.

    .venv/bin/python bench/bench_ledger.py [--records 10000] [--redis redis://127.0.0.1:6379/0]

Prints write and summary times for the SQLite ledger and, when Redis answers, the Redis ledger.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

import redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backend.ledger import SQLiteLedger, UsageRecord  # noqa: E402
from backend.ledger_redis import RedisLedger  # noqa: E402
from core.stores import delete_keys, key  # noqa: E402


def _records(n: int) -> list[UsageRecord]:
    return [UsageRecord(version="bench-v1", task_id=i, project="1", provider="openai", model="gpt-4o-mini",
                        input_tokens=400, output_tokens=60, usd=0.000096, latency_s=0.5 + (i % 100) / 100,
                        status="ok" if i % 50 else "invalid_output") for i in range(n)]


def _measure(name: str, ledger, recs: list[UsageRecord]) -> None:
    t0 = time.perf_counter()
    for i in range(0, len(recs), 100):
        ledger.record_many(recs[i:i + 100])
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = ledger.summary("bench-v1", "1")
    read = time.perf_counter() - t0
    assert summary["calls"] == len(recs), summary
    print(f"{name:<7} write {len(recs):,} records: {write:6.2f} s   summary: {read * 1000:7.1f} ms   "
          f"(calls {summary['calls']:,}, USD {summary['usd']:.4f}, p95 latency {summary['latency_p95']:.2f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    recs = _records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_ledger = SQLiteLedger(os.path.join(tmp, "ledger.sqlite3"))
        _measure("SQLite", sqlite_ledger, recs)
        sqlite_ledger.close()
    prefix = key("bench-ledger", uuid.uuid4().hex[:8])   # under the project's prefix, removed afterwards
    conn = redis.Redis.from_url(args.redis)
    try:
        conn.ping()
    except redis.RedisError as exc:  # no Redis: the SQLite figure stands alone
        print(f"Redis   skipped ({type(exc).__name__})")
        return
    ledger = RedisLedger(args.redis, prefix=prefix)
    try:
        _measure("Redis", ledger, recs)
    finally:
        ledger.close()
        delete_keys(conn, prefix)


if __name__ == "__main__":
    main()
