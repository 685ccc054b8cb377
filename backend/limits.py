"""Limits that hold across processes: calls in flight, requests and tokens per minute, and 429 cool-downs.

A version may say how hard its model may be driven (``prompts.yaml``)::

    limits: {max_concurrency: 8, rpm: 500, tpm: 200000}

The budget belongs to the **model at its endpoint**, not to the version: versions that call the
same (provider, base URL, model) share one budget (:func:`backend.versions.parse_versions` gives
a version without ``limits:`` the limits of another version of the same model, and refuses two
different ``limits:`` for one model).  Before every attempt of every call, :class:`Gates` asks, in
this order:

1. **cool-down**: after a 429 the provider's wait (``Retry-After``, else the backoff) is stored
   for the model, and every thread of every process waits until it has passed;
2. **max_concurrency**: calls of this model in flight, a counting semaphore whose slots are
   leases that expire (the attempt's timeout + :data:`LEASE_MARGIN_S`), so a killed process
   frees its slots by itself;
3. **rpm**: a moving window (``limits.MovingWindowRateLimiter``, exact) of
   ``rpm x RATE_LIMIT_WINDOW_S / 60`` requests per window;
4. **tpm**: a sliding-window counter (``limits.SlidingWindowCounterRateLimiter``: two counters,
   so any cost is cheap; it weighs the previous window, an approximation) charged an
   **estimate** before the call (prompt characters / 4 + 85 per image + the schema + max_tokens,
   or :data:`DEFAULT_OUTPUT_TOKENS` without max_tokens) and corrected after it: the difference
   between the real usage and the estimate is carried (per process) into the next call's charge;
5. **MAX_CALLS_IN_FLIGHT**: one semaphore per process (per :class:`Gates`), across every
   ``/predict`` request and job, whatever the model.

With ``REDIS_URL`` all of 1-4 live in Redis (keys under ``llm-prelabel:limits:``), shared by
every backend worker and RQ worker; without it they live in the process.  Each window is
:data:`WINDOW_MARGIN_S` longer than ``RATE_LIMIT_WINDOW_S``, so requests that reach the provider a
little late do not make it count one too many in its own window.  Cool-downs and leases use
Redis's clock; the windows use each process's wall clock (keep the hosts' clocks synchronised).
If Redis fails, the process falls back to its in-process limits for :data:`FALLBACK_PAUSE_S`.

Waiting counts against the request's deadline: a call that gets no slot before it raises
:class:`~core.errors.DeadlineError` (the task ends as ``deadline``), it never hangs.

>>> window_item(600, 60), window_item(120, 5), window_item(1, 5)
(600 per 61 second, 10 per 6 second, 1 per 6 second)
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterator

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from core.errors import DeadlineError, VersionError
from core.settings import Settings
from core.stores import key, redis_connection

log = logging.getLogger(__name__)

LIMITS_PREFIX = key("limits")   # llm-prelabel:limits:<scope>:slots / :cooldown, and the windows of `limits`
WINDOW_MARGIN_S = 1             # each window is this much longer than RATE_LIMIT_WINDOW_S
LEASE_MARGIN_S = 30.0           # a concurrency slot outlives its attempt's timeout by this much
POLL_S = 0.05                   # how often a waiting call looks again for a free slot (plus jitter)
FALLBACK_PAUSE_S = 30.0         # after a Redis error, in-process limits for this long
DEFAULT_OUTPUT_TOKENS = 256     # the output-token estimate of a version without max_tokens


@dataclass(frozen=True)
class Limits:
    """A model's budget (None = no limit)."""

    max_concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None


LIMIT_KEYS = tuple(f.name for f in fields(Limits))


def parse_limits(raw: Any, where: str) -> Limits | None:
    """The ``limits:`` of a version (None when absent); VersionError naming ``where`` when malformed.

    >>> parse_limits({"rpm": 500, "tpm": None}, "p.yaml: version 'v'")
    Limits(max_concurrency=None, rpm=500, tpm=None)
    >>> parse_limits({"rpm": 0}, "p.yaml: version 'v'")
    Traceback (most recent call last):
    ...
    core.errors.VersionError: p.yaml: version 'v': limits.rpm is 0; it must be a whole number >= 1
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise VersionError(f"{where}: `limits` must be a mapping, e.g. {{max_concurrency: 8, rpm: 500, tpm: 200000}}")
    unknown = sorted(map(str, set(raw) - set(LIMIT_KEYS)))
    if unknown:
        raise VersionError(f"{where}: `limits` has unknown keys {unknown}; allowed: {', '.join(LIMIT_KEYS)}")
    for name, value in raw.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise VersionError(f"{where}: limits.{name} is {value!r}; it must be a whole number >= 1")
    return Limits(**{k: v for k, v in raw.items() if v is not None})


def window_item(per_minute: int, window_s: int) -> RateLimitItem:
    """``per_minute`` scaled to a window of ``window_s`` seconds (at least 1), plus the margin."""
    return RateLimitItemPerSecond(max(1, per_minute * window_s // 60), window_s + WINDOW_MARGIN_S)


# --------------------------------------------------------------------------- where the state lives
class LocalStore:
    """In-process state: ``limits``' MemoryStorage, slot counts and cool-downs (thread-safe)."""

    def __init__(self) -> None:
        self.storage: Any = MemoryStorage()
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._cool: dict[str, float] = {}

    def enter(self, scope: str, max_concurrency: int, lease_s: float) -> tuple[str | None, float]:
        """(a slot token, 0) or (None, seconds to wait: cooling down or full)."""
        with self._lock:
            left = self._cool.get(scope, 0.0) - time.monotonic()
            if left > 0:
                return None, left
            if max_concurrency:
                if self._held.get(scope, 0) >= max_concurrency:
                    return None, POLL_S
                self._held[scope] = self._held.get(scope, 0) + 1
            return "local", 0.0

    def leave(self, scope: str, token: str, max_concurrency: int) -> None:
        if max_concurrency:
            with self._lock:
                self._held[scope] = max(0, self._held.get(scope, 0) - 1)

    def cool_down(self, scope: str, seconds: float) -> None:
        with self._lock:
            self._cool[scope] = max(self._cool.get(scope, 0.0), time.monotonic() + seconds)


# KEYS: slots (sorted set token -> lease end, ms), cooldown.  ARGV: max_concurrency (0 = none), lease ms, token.
# Returns -ms left of a cool-down, 0 when every slot is taken, 1 when a slot was taken (or none is needed).
_ENTER = """
local cd = redis.call('PTTL', KEYS[2])
if cd > 0 then return -cd end
local limit = tonumber(ARGV[1])
if limit == 0 then return 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
# KEYS: cooldown.  ARGV: ms.  Lengthens the cool-down, never shortens it.
_COOL = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
"""


class RedisStore:
    """The same state in Redis, shared by every process that uses ``url``."""

    def __init__(self, url: str, prefix: str = LIMITS_PREFIX, timeout: float | None = None) -> None:
        self.prefix = prefix
        # with ``timeout`` (REDIS_TIMEOUT): short calls and one retry, like the other stores, so a frozen
        # Redis costs one timeout before the limiter falls back to its in-process limits
        pool = redis_connection(url, "the rate limits", timeout=timeout).connection_pool if timeout else None
        self.storage = RedisStorage(url, connection_pool=pool, key_prefix=prefix)
        connection: Any = self.storage.get_connection()
        self._enter = connection.register_script(_ENTER)
        self._cool = connection.register_script(_COOL)
        self._zrem = connection.zrem

    def keys(self, scope: str) -> list[str]:
        return [f"{self.prefix}:{scope}:slots", f"{self.prefix}:{scope}:cooldown"]

    def enter(self, scope: str, max_concurrency: int, lease_s: float) -> tuple[str | None, float]:
        token = uuid.uuid4().hex
        got = int(self._enter(keys=self.keys(scope), args=[max_concurrency, int(lease_s * 1000), token]))
        if got == 1:
            return token, 0.0
        return None, (-got / 1000 if got < 0 else POLL_S)

    def leave(self, scope: str, token: str, max_concurrency: int) -> None:
        if max_concurrency:
            self._zrem(self.keys(scope)[0], token)

    def cool_down(self, scope: str, seconds: float) -> None:
        self._cool(keys=self.keys(scope)[1:], args=[max(1, int(seconds * 1000))])


def _strategies(store: LocalStore | RedisStore) -> tuple[MovingWindowRateLimiter, SlidingWindowCounterRateLimiter]:
    """(rpm strategy, tpm strategy) over ``store``'s storage, made once per store."""
    made = getattr(store, "_strategies", None)
    if made is None:
        made = store._strategies = (MovingWindowRateLimiter(store.storage),  # type: ignore[union-attr]
                                    SlidingWindowCounterRateLimiter(store.storage))
    return made


# --------------------------------------------------------------------------- one model's budget
class Lease:
    """A call's permission: :meth:`release` it with the tokens the call really used (None: unknown)."""

    def __init__(self, limiter: "Limiter", store: LocalStore | RedisStore, token: str, estimate: int):
        self.limiter, self.store, self.token, self.estimate = limiter, store, token, estimate
        self.used: int | None = 0   # the caller sets the real usage once the answer is in

    def release(self, used: int | None) -> None:
        limiter = self.limiter
        try:
            self.store.leave(limiter.scope, self.token, limiter.limits.max_concurrency or 0)
        except Exception as exc:  # the lease expires by itself
            log.warning("limits: could not free a slot of %s (%s); it expires by itself", limiter.scope, exc)
        if limiter.tpm is not None and used is not None:
            limiter.owe(used - self.estimate)


class Limiter:
    """One model's budget (``scope``) in the shared store, or in the process while Redis fails."""

    def __init__(self, scope: str, limits: Limits, shared: LocalStore | RedisStore, local: LocalStore, window_s: int):
        self.scope, self.limits, self.shared, self.local = scope, limits, shared, local
        self.rpm = window_item(limits.rpm, window_s) if limits.rpm else None
        self.tpm = window_item(limits.tpm, window_s) if limits.tpm else None
        self._owed = 0              # tokens used but not charged (< 0: charged but not used), this process
        self._lock = threading.Lock()
        self._local_until = 0.0

    def store(self) -> LocalStore | RedisStore:
        return self.local if time.monotonic() < self._local_until else self.shared

    def fall_back(self, exc: Exception) -> None:
        """Use the in-process store for FALLBACK_PAUSE_S after ``exc`` from the shared one."""
        self._local_until = time.monotonic() + FALLBACK_PAUSE_S
        log.warning("limits: Redis failed (%s: %s); limits of %s hold in this process only for %g s",
                    type(exc).__name__, exc, self.scope, FALLBACK_PAUSE_S)

    def owe(self, tokens: int) -> None:
        with self._lock:
            self._owed += tokens

    def acquire(self, estimate: Any, deadline: float, lease_s: float) -> Lease:
        """A lease once every limit has room; DeadlineError when ``deadline`` (monotonic) passes first.

        ``estimate()`` is the call's token estimate (asked only when the model has a tpm).
        """
        tokens = int(estimate()) if self.tpm is not None else 0
        while True:
            store = self.store()
            try:
                lease, wait = self._try(store, tokens, lease_s)
            except redis_errors() as exc:
                if store is self.local:
                    raise
                self.fall_back(exc)
                continue
            if lease is not None:
                return lease
            pause(wait, deadline, f"a slot of {self.scope}")

    def _try(self, store: LocalStore | RedisStore, estimate: int, lease_s: float) -> tuple[Lease | None, float]:
        slots = self.limits.max_concurrency or 0
        token, wait = store.enter(self.scope, slots, lease_s)
        if token is None:
            return None, wait
        with self._lock:
            cost = max(0, estimate + self._owed)
        if self.tpm is not None:
            cost = min(cost, self.tpm.amount)
        wait = self._take(store, cost)
        if wait:
            store.leave(self.scope, token, slots)
            return None, wait
        self.owe(estimate - cost)
        return Lease(self, store, token, estimate), 0.0

    def _take(self, store: LocalStore | RedisStore, cost: int) -> float:
        """0 after taking one request and ``cost`` tokens from the windows; else seconds until they may have room.

        tpm is tested first so that a request is not spent when the tokens are short (a race between
        the test and the hit only ever over-counts).
        """
        moving, sliding = _strategies(store)
        if self.tpm is not None and cost and not sliding.test(self.tpm, self.scope, "tpm", cost=cost):
            return self._reset_in(sliding, self.tpm, "tpm", 1.0)
        if self.rpm is not None and not moving.hit(self.rpm, self.scope, "rpm"):
            return self._reset_in(moving, self.rpm, "rpm", float(self.rpm.get_expiry()))
        if self.tpm is not None and cost and not sliding.hit(self.tpm, self.scope, "tpm", cost=cost):
            return self._reset_in(sliding, self.tpm, "tpm", 1.0)
        return 0.0

    def _reset_in(self, strategy: Any, item: RateLimitItem, name: str, most: float) -> float:
        reset = strategy.get_window_stats(item, self.scope, name).reset_time
        return min(max(POLL_S, reset - time.time()), most)


def redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.RedisError, OSError)


def pause(wait: float, deadline: float, what: str) -> None:
    """Sleep ``wait`` seconds (plus jitter), never past ``deadline``; DeadlineError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineError(f"the deadline (PREDICT_DEADLINE) passed while this task waited for {what}; "
                            "it was not sent: run Retrieve Predictions again to label the rest")
    time.sleep(min(wait + random.uniform(0, POLL_S), left))


# --------------------------------------------------------------------------- a process's gates
class Gates:
    """A process's gates before each provider attempt: one :class:`Limiter` per model, and
    ``MAX_CALLS_IN_FLIGHT`` for all of them.  Held by the :class:`~backend.providers.pool.ProviderPool`.

    >>> gates = Gates(Settings(max_calls_in_flight=2))
    >>> with gates.call("openai|http://h/v1|m", Limits(rpm=60), lambda: 10, time.monotonic() + 1, 30) as lease:
    ...     lease.used = 12
    >>> gates.limiter("openai|http://h/v1|m", Limits(rpm=60)).rpm
    60 per 61 second
    """

    def __init__(self, settings: Settings, shared: LocalStore | RedisStore | None = None):
        self.settings = settings
        self.local = LocalStore()
        self.shared = shared or (RedisStore(settings.redis_url, timeout=settings.redis_timeout)
                                 if settings.redis_url else self.local)
        self.in_flight = threading.BoundedSemaphore(settings.max_calls_in_flight)
        self._limiters: dict[tuple[str, Limits], Limiter] = {}
        self._lock = threading.Lock()

    def limiter(self, scope: str, limits: Limits) -> Limiter:
        with self._lock:
            found = self._limiters.get((scope, limits))
            if found is None:
                found = self._limiters[(scope, limits)] = Limiter(scope, limits, self.shared, self.local,
                                                                  self.settings.rate_limit_window_s)
            return found

    @contextmanager
    def call(self, scope: str, limits: Limits, estimate: Any, deadline: float, lease_s: float) -> Iterator[Lease]:
        """Hold a lease of ``scope``'s budget and a MAX_CALLS_IN_FLIGHT slot for one attempt.

        Set ``lease.used`` to the tokens the attempt used; DeadlineError when no slot comes in time.
        """
        lease = self.limiter(scope, limits).acquire(estimate, deadline, lease_s)
        try:
            if not self.in_flight.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise DeadlineError("the deadline (PREDICT_DEADLINE) passed while this task waited for one of the "
                                    f"MAX_CALLS_IN_FLIGHT ({self.settings.max_calls_in_flight}) slots; it was not "
                                    "sent: run Retrieve Predictions again to label the rest")
            try:
                yield lease
            finally:
                self.in_flight.release()
        finally:
            lease.release(lease.used)

    def cool_down(self, scope: str, limits: Limits, seconds: float) -> None:
        """Every call of ``scope`` (in every process sharing the store) waits ``seconds`` from now."""
        limiter = self.limiter(scope, limits)
        try:
            limiter.store().cool_down(scope, seconds)
        except redis_errors() as exc:
            limiter.fall_back(exc)
            self.local.cool_down(scope, seconds)
