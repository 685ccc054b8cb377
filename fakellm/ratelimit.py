"""The stand-in's own rate limit: answer 429 above N requests per moving window, like a provider.

>>> w = MovingWindow()
>>> [w.admit(2, 60.0, now=t) for t in (0.0, 1.0, 2.0, 60.5)]
[None, None, 58.0, None]
"""
from __future__ import annotations

import threading
import time
from collections import deque


class MovingWindow:
    """Arrival times of the admitted requests of the last window (exact; thread-safe)."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, limit: int, window_s: float, now: float | None = None) -> float | None:
        """None when a request arriving ``now`` is within ``limit`` per ``window_s`` (it is counted);
        else the seconds until the oldest counted request leaves the window (a 429 is not counted)."""
        now = time.time() if now is None else now
        with self._lock:
            while self._times and self._times[0] <= now - window_s:
                self._times.popleft()
            if len(self._times) >= limit:
                return self._times[0] + window_s - now
            self._times.append(now)
            return None

    def clear(self) -> None:
        with self._lock:
            self._times.clear()
