"""Bounded outbound HTTP for image fetches: a total deadline, a cap on fetches in flight, a size cap.

A slow server cannot hold a thread or a connection past the deadline of the
fetch (the earlier of ``MEDIA_FETCH_TIMEOUT`` and the deadline of the
``/predict`` request that needs the image):

* waiting for a free slot (``MEDIA_FETCH_CONCURRENCY`` fetches at a time,
  which is also the size of the connection pool, so the pool never runs dry)
  ends at the deadline;
* connecting, sending and waiting for the headers use the time left as their
  timeouts;
* a watchdog timer shuts the socket down when the deadline passes, which ends
  a read that is blocked or that receives a byte now and then, and the body is
  streamed with the deadline checked after every chunk;
* connections are not kept alive: each fetch opens its own and closes it, so
  nothing of a slow fetch stays in the pool.
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Iterator

import httpx

from core.errors import MediaError


class FetchDeadline(Exception):
    """The fetch's deadline passed (while waiting for a slot, connecting, or reading)."""


def _bad_location(url: str, exc: Exception) -> MediaError:
    return MediaError(f"{url.split('?')[0][:200]} redirects to an invalid URL ({exc}); not followed")


class _Watchdog:
    """Shuts down the socket of one request when its deadline passes.

    httpx's ``trace`` extension hands us every network stream the request opens
    (TCP, then TLS); the timer shuts the latest one down.
    """

    def __init__(self, seconds: float):
        self.fired = False
        self._stream: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def trace(self, name: str, info: dict) -> None:
        stream = info.get("return_value") if name.endswith(".complete") else None
        if stream is None or not hasattr(stream, "get_extra_info"):
            return
        with self._lock:
            self._stream, fired = stream, self.fired
        if fired:
            self._shutdown(stream)

    def _fire(self) -> None:
        with self._lock:
            self.fired, stream = True, self._stream
        if stream is not None:
            self._shutdown(stream)

    @staticmethod
    def _shutdown(stream: Any) -> None:
        sock = stream.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass  # already closed

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


class Fetcher:
    """One process's outbound HTTP for images: at most ``concurrency`` fetches at once."""

    def __init__(self, concurrency: int):
        self.concurrency = max(1, int(concurrency))
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None

    def client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                # stateless like a fresh client per fetch: no cookies kept, no connection kept alive;
                # redirects are followed by the caller, which checks every hop
                no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
                limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=0)
                self._http = httpx.Client(follow_redirects=False, cookies=no_cookies, limits=limits)
            return self._http

    @contextmanager
    def slot(self, deadline: float) -> Iterator[None]:
        """Hold one of the ``concurrency`` slots; :class:`FetchDeadline` if none frees up before ``deadline``."""
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise FetchDeadline()
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def open(self, method: str, url: str, deadline: float, **kwargs) -> Iterator[httpx.Response]:
        """A streamed response, closed on exit; the socket is shut down at ``deadline``.

        Raises :class:`FetchDeadline` when the deadline passed before or during the
        exchange (also while the caller reads the body inside the ``with``).
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchDeadline()
        client = self.client()
        request = client.build_request(method, url, timeout=httpx.Timeout(left), **kwargs)
        with _Watchdog(left) as watchdog:
            request.extensions["trace"] = watchdog.trace
            try:
                response = client.send(request, stream=True)
                try:
                    yield response
                finally:
                    response.close()
                if watchdog.fired:  # a body cut short by the watchdog can look complete (HTTP/1.0, no length)
                    raise FetchDeadline()
            except httpx.InvalidURL as exc:  # httpx reads a redirect's Location even when it does not follow it
                raise _bad_location(url, exc) from None
            except httpx.TimeoutException:
                raise FetchDeadline() from None
            except httpx.TransportError as exc:
                if watchdog.fired or time.monotonic() >= deadline:
                    raise FetchDeadline() from None
                if "location header" in str(exc).lower():
                    raise _bad_location(url, exc) from None
                raise

    @staticmethod
    def read(response: httpx.Response, deadline: float, max_bytes: int, shown: str) -> bytes:
        """The body, streamed: :class:`MediaError` past ``max_bytes``, :class:`FetchDeadline` past ``deadline``."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise MediaError(
                f"the image {shown} is {int(declared) / 1e6:.1f} MB; "
                f"the limit is {max_bytes / 1e6:.0f} MB (MEDIA_MAX_BYTES)"
            )
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise MediaError(f"the image {shown} is larger than {max_bytes / 1e6:.0f} MB (MEDIA_MAX_BYTES)")
            chunks.append(chunk)
            if time.monotonic() >= deadline:
                raise FetchDeadline()
        if time.monotonic() >= deadline:  # the end of the body may be the watchdog shutting the socket
            raise FetchDeadline()
        return b"".join(chunks)

