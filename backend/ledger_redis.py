"""The usage ledger in Redis (see :mod:`backend.ledger` for the records and the summary).

Redis layout (``P`` = key prefix, default ``llm-prelabel:ledger``, see ``core.stores``; ``S`` = scope: ``*`` for all
projects, ``p:<project>`` for one)::

    P:versions                  set of version ids              (also P:versions:p:<project>)
    P:rec:<version>             stream, one entry per call: field "r" = the record as JSON
    P:sum:<version>:S           hash: calls, input_tokens, output_tokens, usd, usd_calls,
                                err:<reason>, first_ts, last_ts, drop:<kind>, repaired
    P:tasks:<version>:S         set of task ids (SCARD = distinct tasks)
    P:lat:<version>:S           sorted set member=stream entry id, score=latency_s

    P:ids:<version>             set of record ids already counted

Each record is written by one Lua script (atomic, one round trip; ``record_many`` pipelines
them), so ``summary`` is a handful of O(1)/O(log n) reads whatever the number of calls.
The script counts a record id once: a record written again (replayed from the spool
after Redis came back, see below) changes nothing.

Redis down: :func:`open_ledger` gives a ledger on the process's ``core.spool.RedisLink``.
Records that cannot reach Redis are kept in the local spool (``SPOOL_DIR``) and replayed
when Redis is back, each exactly once; ``record``/``record_many`` never raise for an
unreachable Redis (the reads do).
"""
from __future__ import annotations

import itertools
import json
from typing import Iterable

from backend.ledger import DEFAULT_PREFIX, UsageRecord, _empty_summary, _rank
from core import spool
from core.stores import delete_keys, redis_connection

# KEYS: none (all keys derive from ARGV so one script serves every version/scope)
# ARGV: prefix, version, project ('' = none), record json, task id, input, output, usd ('' = unknown),
#       latency, status, ts, record id ('' = none), dropped (JSON object kind -> count), repaired
_RECORD_LUA = """
local p, version, project = ARGV[1], ARGV[2], ARGV[3]
if ARGV[12] ~= '' and redis.call('SADD', p .. ':ids:' .. version, ARGV[12]) == 0 then return false end
local id = redis.call('XADD', p .. ':rec:' .. version, '*', 'r', ARGV[4])
local scopes = {'*'}
redis.call('SADD', p .. ':versions', version)
if project ~= '' then
  table.insert(scopes, 'p:' .. project)
  redis.call('SADD', p .. ':versions:p:' .. project, version)
end
local ts = tonumber(ARGV[11])
local dropped, repaired = cjson.decode(ARGV[13]), tonumber(ARGV[14])
for _, s in ipairs(scopes) do
  local h = p .. ':sum:' .. version .. ':' .. s
  redis.call('HINCRBY', h, 'calls', 1)
  redis.call('HINCRBY', h, 'input_tokens', ARGV[6])
  redis.call('HINCRBY', h, 'output_tokens', ARGV[7])
  if ARGV[8] ~= '' then
    redis.call('HINCRBYFLOAT', h, 'usd', ARGV[8])
    redis.call('HINCRBY', h, 'usd_calls', 1)
  end
  if ARGV[10] ~= 'ok' then redis.call('HINCRBY', h, 'err:' .. ARGV[10], 1) end
  local first = redis.call('HGET', h, 'first_ts')
  if (not first) or ts < tonumber(first) then redis.call('HSET', h, 'first_ts', ARGV[11]) end
  local last = redis.call('HGET', h, 'last_ts')
  if (not last) or ts > tonumber(last) then redis.call('HSET', h, 'last_ts', ARGV[11]) end
  for kind, n in pairs(dropped) do redis.call('HINCRBY', h, 'drop:' .. kind, n) end
  if repaired > 0 then redis.call('HINCRBY', h, 'repaired', repaired) end
  redis.call('SADD', p .. ':tasks:' .. version .. ':' .. s, ARGV[5])
  redis.call('ZADD', p .. ':lat:' .. version .. ':' .. s, ARGV[9], id)
end
return id
"""


def _record_args(prefix: str, rec: UsageRecord) -> list:
    return [prefix, rec.version, "" if rec.project is None else str(rec.project), rec.to_json(),
            json.dumps(rec.task_id), int(rec.input_tokens), int(rec.output_tokens),
            "" if rec.usd is None else repr(float(rec.usd)), repr(float(rec.latency_s)), rec.status,
            repr(float(rec.ts)), rec.rid or "",
            json.dumps({str(k): int(n) for k, n in (rec.dropped or {}).items() if n}), int(rec.repaired or 0)]


def _write_records(connection, prefix: str, recs: list[UsageRecord]) -> None:
    """Run the record script for each record: one record (the predictor's case: a record as each
    task ends) in one ``EVALSHA``; more in one pipelined round trip (after redis-py's ``SCRIPT
    EXISTS`` check, one round trip more: it is why one record is not pipelined)."""
    if not recs:
        return
    script = connection.register_script(_RECORD_LUA)
    if len(recs) == 1:
        script(args=_record_args(prefix, recs[0]))   # loads the script itself on NOSCRIPT
        return
    pipe = connection.pipeline(transaction=False)
    for rec in recs:
        script(args=_record_args(prefix, rec), client=pipe)
    pipe.execute()


def _replay_records(connection, _settings, payloads: list[dict]) -> None:
    """Spool replay: write the records kept while Redis was down (each counted once: its record id)."""
    for prefix, group in itertools.groupby(payloads, key=lambda p: p["prefix"]):
        _write_records(connection, prefix, [UsageRecord.from_json(p["record"]) for p in group])


spool.KINDS["ledger"] = spool.Kind("usage record(s)", _replay_records)


class RedisLedger:
    """The ledger in Redis (layout in the module docstring).

    With ``link`` (a ``core.spool.RedisLink``) records that cannot reach Redis are spooled
    and replayed later; without, a Redis error is raised (and ``url`` is pinged now).
    """

    def __init__(self, url: str | None, prefix: str = DEFAULT_PREFIX, *, link: spool.RedisLink | None = None):
        self.prefix = prefix
        self.link = link
        self._r = link.connection if link else redis_connection(url, "the usage ledger", ping=True)

    def record(self, rec: UsageRecord) -> None:
        """Append one record (atomically updates the counters)."""
        self.record_many([rec])

    def record_many(self, recs: Iterable[UsageRecord]) -> None:
        """Append records in one pipelined round trip (spooled when Redis is down and there is a link)."""
        recs = list(recs)
        if self.link is None:
            _write_records(self._r, self.prefix, recs)
            return
        items = [(rec.rid, {"prefix": self.prefix, "record": rec.to_json()}) for rec in recs]
        self.link.write_or_keep("ledger", items, lambda: _write_records(self._r, self.prefix, recs))

    def _scope(self, project: str | None) -> str:
        return "*" if project is None else f"p:{project}"

    def summary(self, version: str, project: str | None = None) -> dict:
        """Totals for a version (optionally one project); O(log n) reads."""
        s = self._scope(project)
        h = {k.decode(): v.decode() for k, v in self._r.hgetall(f"{self.prefix}:sum:{version}:{s}").items()}
        out = _empty_summary(version, project)
        calls = int(h.get("calls", 0))
        if not calls:
            return out
        lat = f"{self.prefix}:lat:{version}:{s}"
        pipe = self._r.pipeline(transaction=False)
        pipe.scard(f"{self.prefix}:tasks:{version}:{s}")
        pipe.zrange(lat, _rank(calls, 0.5), _rank(calls, 0.5), withscores=True)
        pipe.zrange(lat, _rank(calls, 0.95), _rank(calls, 0.95), withscores=True)
        tasks, p50, p95 = pipe.execute()
        usd_calls = int(h.get("usd_calls", 0))
        out.update(
            calls=calls, tasks=tasks, input_tokens=int(h.get("input_tokens", 0)),
            output_tokens=int(h.get("output_tokens", 0)),
            usd=round(float(h["usd"]), 10) if usd_calls else None, usd_complete=usd_calls == calls,
            errors={k[4:]: int(v) for k, v in h.items() if k.startswith("err:")},
            latency_p50=p50[0][1] if p50 else None, latency_p95=p95[0][1] if p95 else None,
            first_ts=float(h["first_ts"]), last_ts=float(h["last_ts"]),
            dropped={k[5:]: int(v) for k, v in sorted(h.items()) if k.startswith("drop:") and int(v)},
            repaired=int(h.get("repaired", 0)),
        )
        return out

    def versions(self, project: str | None = None) -> list[str]:
        """Version ids with at least one record (in that project), sorted."""
        key = f"{self.prefix}:versions" + ("" if project is None else f":p:{project}")
        return sorted(v.decode() for v in self._r.smembers(key))

    def records(self, version: str, project: str | None = None) -> list[UsageRecord]:
        """Every record of a version (optionally one project), oldest first."""
        out, start = [], "-"
        key = f"{self.prefix}:rec:{version}"
        while True:
            batch = self._r.xrange(key, start, "+", count=5000)
            for _, fields in batch:
                rec = UsageRecord.from_json(fields[b"r"])
                if project is None or (rec.project is not None and str(rec.project) == str(project)):
                    out.append(rec)
            if len(batch) < 5000:
                return out
            start = "(" + batch[-1][0].decode()

    def delete_all(self) -> int:
        """Remove every key under this ledger's prefix (tests and resets); returns how many."""
        return delete_keys(self._r, self.prefix)

    def close(self) -> None:
        if self.link is None:   # a link's connection is shared by the process's stores
            self._r.close()


