"""The response cache: an LLM answer is reused when exactly the same request is made again.

Shared by every caller of :class:`backend.predictor.Predictor` (``/predict``, the import job,
``python -m scoring run``): the predictor looks a request up before calling the provider and
stores the answer after it turned into a valid prediction.  Only successful answers are stored;
an error (provider error, refusal, truncated or unusable answer) never is, so the next request
goes to the provider again.

The key (:func:`cache_key`) is a SHA-256 of everything that determines the answer: provider
name, base URL, model, the version's ``params`` (all of them), the rendered system prompt and
user parts (an inline image as the SHA-256 of its bytes and its media type, an image URL as the
URL), the output schema and its name.  The API key is not part of it.  A change of prompt,
label config, task data, model or params therefore misses; the same version on the same task
hits, whichever project or process asks.

Stores (:func:`open_response_cache`):

* ``REDIS_URL`` set -> :class:`RedisResponseCache`: one string per answer at
  ``llm-prelabel:cache:<key>`` (``core.stores.key``), expiring after ``RESPONSE_CACHE_TTL_DAYS``;
* otherwise -> :class:`SQLiteResponseCache` at ``{DATA_DIR}/response-cache.sqlite3``.

``RESPONSE_CACHE=off`` turns the cache off for the whole process; ``cache: false`` on a version
in prompts.yaml turns it off for that version; ``python -m scoring run --no-cache`` for one run.
A cache that fails (Redis down, disk full) is logged and ignored: it never costs a prediction.

>>> c = MemoryResponseCache()
>>> c.put("k", CachedAnswer({"sentiment": "Positive"}, '{"sentiment": "Positive"}', 120, 9))
>>> c.get("k").output_tokens, c.get("other")
(9, None)
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Protocol

from core.spool import RedisLink, redis_link
from core.stores import SQLiteFile, key, redis_connection, sqlite_path

CACHE_FORMAT = 1  # bump when the key or the stored value changes meaning: every old entry then misses
CACHE_PREFIX = key("cache")
REDIS_TIMEOUT_S = 2.0  # seconds a cache read or write may wait for Redis


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the parsed JSON, its raw text, and the tokens the original call cost."""

    data: dict
    raw: str
    input_tokens: int = 0
    output_tokens: int = 0

    def to_json(self) -> str:
        # the fields as they are (dataclasses.asdict deep-copies ``data`` first)
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "CachedAnswer":
        return cls(**json.loads(text))


class ResponseCache(Protocol):
    def get(self, key: str) -> CachedAnswer | None: ...
    def put(self, key: str, answer: CachedAnswer) -> None: ...
    def holds(self, keys: list[str]) -> set[str]: ...   # which of ``keys`` get() would answer (a run's plan)
    def close(self) -> None: ...


HOLDS_BATCH = 500  # keys asked in one round trip (Redis) or one query (SQLite) by ``holds``


def _part(part: Any) -> Any:
    """A user part as it enters the key: text as is, an image by URL or by the hash of its bytes."""
    if hasattr(part, "text"):
        return {"text": part.text}
    if getattr(part, "data", None) is not None:
        return {"image_sha256": hashlib.sha256(part.data).hexdigest(), "media_type": part.mime()}
    return {"image_url": getattr(part, "url", None)}


def cache_key(provider: Any, system: str, parts: list, schema: dict, schema_name: str) -> str:
    """The key of one request of ``provider`` (a :class:`backend.providers.base.Provider`).

    >>> from types import SimpleNamespace as NS
    >>> from backend.providers.base import TextPart
    >>> p = NS(name="openai", base_url="http://h/v1", version=NS(model="m", params={"temperature": 0}))
    >>> k = cache_key(p, "sys", [TextPart("Great!")], {"type": "object"}, "labels")
    >>> len(k), k == cache_key(p, "sys", [TextPart("Great!!")], {"type": "object"}, "labels")
    (64, False)
    """
    version = provider.version
    body = {"format": CACHE_FORMAT, "provider": provider.name, "base_url": getattr(provider, "base_url", ""),
            "model": version.model, "params": dict(version.params), "system": system,
            "parts": [_part(p) for p in parts], "schema": schema, "schema_name": schema_name}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class MemoryResponseCache:
    """A process-local cache (tests, one-off scripts)."""

    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            text = self._items.get(key)
        return None if text is None else CachedAnswer.from_json(text)

    def put(self, key: str, answer: CachedAnswer) -> None:
        with self._lock:
            self._items[key] = answer.to_json()

    def holds(self, keys: list[str]) -> set[str]:
        with self._lock:
            return set(keys) & self._items.keys()

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts REAL NOT NULL
);
"""


class SQLiteResponseCache:
    """Answers in one SQLite file (WAL; several threads and processes); entries older than
    ``ttl_s`` seconds (0 = never) miss and are purged when the file is opened."""

    def __init__(self, path: str, ttl_s: float = 0.0):
        self.path, self.ttl_s = path, ttl_s
        self._db = SQLiteFile(path, _SCHEMA, what="the response cache")
        if ttl_s:
            self._db.execute("DELETE FROM answers WHERE ts < ?", (time.time() - ttl_s,))

    def get(self, key: str) -> CachedAnswer | None:
        rows = self._db.query("SELECT value, ts FROM answers WHERE key = ?", (key,))
        if not rows or (self.ttl_s and rows[0][1] < time.time() - self.ttl_s):
            return None
        return CachedAnswer.from_json(rows[0][0])

    def put(self, key: str, answer: CachedAnswer) -> None:
        self._db.execute("INSERT OR REPLACE INTO answers (key, value, ts) VALUES (?, ?, ?)",
                         (key, answer.to_json(), time.time()))

    def holds(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        oldest = time.time() - self.ttl_s if self.ttl_s else float("-inf")
        for i in range(0, len(keys), HOLDS_BATCH):
            part = keys[i:i + HOLDS_BATCH]
            rows = self._db.query(f"SELECT key FROM answers WHERE ts >= ? AND key IN ({', '.join('?' * len(part))})",
                                  (oldest, *part))
            found.update(r[0] for r in rows)
        return found

    def close(self) -> None:
        self._db.close()


class RedisResponseCache:
    """Answers in Redis, one string per key under ``prefix``, expiring after ``ttl_s`` seconds (0 = never)."""

    def __init__(self, url: str, prefix: str = CACHE_PREFIX, ttl_s: float = 0.0, link: RedisLink | None = None):
        self.prefix, self.ttl_s, self.link = prefix, ttl_s, link
        self._r = link.connection if link else redis_connection(url, "the response cache")
        if link is None:
            # A cache must never hold a prediction up: an unreachable Redis fails fast (the predictor then
            # calls the provider and leaves the cache alone for a while).
            self._r.connection_pool.connection_kwargs.update(socket_timeout=REDIS_TIMEOUT_S,
                                                             socket_connect_timeout=REDIS_TIMEOUT_S)

    def _call(self, fn, *args, **kwargs):
        """Through the process's Redis link when there is one: its short timeout and its back-off
        (while Redis is known to be down the call fails at once instead of waiting again)."""
        return self.link.call(fn, *args, **kwargs) if self.link else fn(*args, **kwargs)

    def get(self, key: str) -> CachedAnswer | None:
        text = self._call(self._r.get, f"{self.prefix}:{key}")
        return None if text is None else CachedAnswer.from_json(text)

    def put(self, key: str, answer: CachedAnswer) -> None:
        self._call(self._r.set, f"{self.prefix}:{key}", answer.to_json(), ex=int(self.ttl_s) or None)

    def holds(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), HOLDS_BATCH):
            part = keys[i:i + HOLDS_BATCH]
            pipe = self._r.pipeline(transaction=False)
            for k in part:
                pipe.exists(f"{self.prefix}:{k}")
            found.update(k for k, n in zip(part, self._call(pipe.execute), strict=True) if n)
        return found

    def close(self) -> None:
        if self.link is None:  # the shared link belongs to the process
            self._r.close()


def open_response_cache(settings, *, prefix: str = CACHE_PREFIX) -> ResponseCache | None:
    """The process's response cache: None when ``RESPONSE_CACHE`` is off; Redis with ``REDIS_URL``;
    else SQLite at ``{DATA_DIR}/response-cache.sqlite3``."""
    if not settings.response_cache:
        return None
    ttl_s = settings.response_cache_ttl_days * 86400
    if settings.redis_url:
        return RedisResponseCache(settings.redis_url, prefix=prefix, ttl_s=ttl_s, link=redis_link(settings))
    return SQLiteResponseCache(sqlite_path(settings, "response-cache.sqlite3"), ttl_s=ttl_s)
