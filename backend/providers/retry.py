"""When a failed provider attempt is tried again, and after how long (the retry policy).

:meth:`backend.providers.base.Provider.complete` owns retrying (the SDK clients are made with
``max_retries=0``), so that every attempt passes the shared limits (:mod:`backend.limits`), a 429
slows every process down, and waiting counts against the request's deadline.  The policy:

* **what is retried**: HTTP 408, 409, 429 and 5xx, timeouts and connection errors (what the SDKs
  retry); never a 4xx such as 400/401/403/404, nor a response saying ``x-should-retry: false``;
* **how often**: at most ``params.max_retries`` / ``PROVIDER_MAX_RETRIES`` retries (default 2);
* **how long**: ``Retry-After`` (``retry-after-ms`` first) when the server sends one (plus up to
  10 % jitter); a server asking for more than :data:`MAX_RETRY_AFTER_S` is not retried at all.
  Otherwise exponential backoff with jitter: ``d = min(CAP_S, BASE_S * 2**retry)``, a wait drawn
  from ``[d/2, d]``;
* **total time**: the waits of one call add up to at most ``PROVIDER_RETRY_MAX_WAIT`` seconds and
  never reach past the request's deadline; a retry that would is not made (the error is raised);
* **429**: the wait becomes the model's cool-down in the shared limiter: every call of that model,
  in every process, waits it out before its next attempt.

>>> all(d / 2 <= backoff(n) <= d for n, d in enumerate([0.5, 1, 2, 4, 8, 8, 8]))
True
>>> retry_after_seconds({"retry-after": "600"}), retry_after_seconds({"retry-after-ms": "250"})
(600.0, 0.25)
"""
from __future__ import annotations

import random
from typing import Any

BASE_S = 0.5            # the first backoff is drawn from [BASE_S/2, BASE_S]
CAP_S = 8.0             # no backoff over this
MAX_RETRY_AFTER_S = 60.0  # a server asking to wait longer is not retried (a prediction thread is never parked)
RETRY_STATUSES = frozenset({408, 409, 429})


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (0 = the first): exponential, capped, with jitter."""
    d = min(CAP_S, BASE_S * 2 ** min(retry, 30))
    return d / 2 + random.uniform(0, d / 2)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``retry-after`` (a number), else None."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return float(raw) / scale
            except ValueError:
                return None
    return None


def retry_wait(exc: Exception, sdk: Any, retry: int) -> float | None:
    """Seconds to wait before retrying after ``exc`` (an exception of the ``sdk`` module) as retry
    number ``retry``; None when it is not worth retrying.  Counts and budgets are the caller's."""
    if isinstance(exc, (sdk.APITimeoutError, sdk.APIConnectionError)):
        return backoff(retry)
    if not isinstance(exc, sdk.APIStatusError):
        return None
    status = exc.status_code
    headers = exc.response.headers
    if headers.get("x-should-retry") == "false" or not (status in RETRY_STATUSES or status >= 500):
        return None
    asked = retry_after_seconds(headers)
    if asked is None or asked <= 0:
        return backoff(retry)
    if asked > MAX_RETRY_AFTER_S:
        return None
    return asked + random.uniform(0, asked / 10)


def is_rate_limit(exc: Exception, sdk: Any) -> bool:
    """True for a 429 answer."""
    return isinstance(exc, sdk.APIStatusError) and exc.status_code == 429
