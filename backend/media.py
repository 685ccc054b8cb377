"""Turn the image reference in a task (a URL or a Label Studio path) into an ``ImagePart``.

What is allowed, and how it is sent to the model:

==========================================  =============================================
task value                                   result
==========================================  =============================================
``https://example.com/cat.jpg``             ``ImagePart(url=...)``: the provider fetches it
``/data/upload/3/cat.jpg``,                  fetched from ``LABEL_STUDIO_URL`` with
``/data/local-files/?d=images/cat.jpg``,     ``Authorization: Token <LABEL_STUDIO_API_KEY>``
any other ``/path`` on Label Studio          and sent inline (``ImagePart(data=..., media_type=...)``)
``http://<LABEL_STUDIO_URL origin>/...``     the same (a private Label Studio URL)
``data:image/png;base64,...``                decoded and sent inline
``http://127.0.0.1/``, ``http://redis/``,    :class:`~core.errors.MediaError` unless
``http://169.254.169.254/``, ``10.x``...     ``ALLOW_INTERNAL_IMAGE_URLS=true`` (see ``backend.urls``)
whitespace, control characters, ``\\``     :class:`~core.errors.MediaError`
``file:``, ``ftp:``, ``s3:``, ``gs:`` ...    :class:`~core.errors.MediaError`
a relative path without ``LABEL_STUDIO_URL`` :class:`~core.errors.MediaError` saying what to set
==========================================  =============================================

The Label Studio key goes only to ``LABEL_STUDIO_URL``'s origin (scheme, host
and port, as both ``urllib`` and ``httpx`` read the URL): :meth:`MediaResolver._open`
checks this before every request that carries it.  Redirects are followed here,
at most ``MEDIA_MAX_REDIRECTS``, each hop checked: hops on the Label Studio
origin carry the key; once a hop leaves it (e.g. a presigned cloud storage URL)
no later hop does, and the target must be a public host unless
``ALLOW_INTERNAL_IMAGE_URLS=true``.  Each fetch ends by ``MEDIA_FETCH_TIMEOUT``
or the caller's ``deadline`` (see ``backend.fetching``), whichever is first;
at most ``MEDIA_FETCH_CONCURRENCY`` run at once; images are capped at
``MEDIA_MAX_BYTES`` (20 MB).  A personal access token (a JWT refresh token) is
exchanged for an access token at ``/api/token/refresh`` and sent as
``Bearer``; a legacy token is sent as ``Token``.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from urllib.parse import urljoin

import httpx

from backend.fetching import FetchDeadline, Fetcher
from backend.providers.base import ImagePart, sniff_media_type
from backend.urls import has_userinfo, internal_reason, origin_of, scheme_of, unsafe_chars
from core.errors import MediaError

MAX_BYTES = 20 * 1024 * 1024
ALLOW_HINT = "set ALLOW_INTERNAL_IMAGE_URLS=true to allow hosts of your own network"


def _is_jwt(key: str) -> bool:
    return key.startswith("eyJ") and key.count(".") == 2


def _shown(url: str) -> str:
    return url.split("?")[0][:200]


class MediaResolver:
    """Resolves image references for one backend process (see the module docstring).

    Example::

        resolver = MediaResolver(settings)
        resolver.resolve("https://example.com/cat.jpg")   # ImagePart(url="https://example.com/cat.jpg")
        resolver.resolve("/data/upload/1/cat.jpg", deadline=time.monotonic() + 10)
        # ImagePart(data=b"\\xff\\xd8...", media_type="image/jpeg")
    """

    def __init__(self, settings, *, max_bytes: int | None = None, timeout: float | None = None):
        self.settings = settings
        self.max_bytes = int(max_bytes if max_bytes is not None else getattr(settings, "media_max_bytes", MAX_BYTES))
        self.timeout = float(timeout if timeout is not None else settings.media_fetch_timeout)
        self.max_redirects = settings.media_max_redirects
        self.allow_internal = settings.allow_internal_image_urls
        self.base = (settings.label_studio_url or "").rstrip("/") or None
        self._origin = origin_of(self.base) if self.base else None
        self._access: str | None = None
        self._lock = threading.Lock()
        self.fetcher = Fetcher(settings.media_fetch_concurrency)

    # ------------------------------------------------------------------
    def resolve(self, value, *, deadline: float | None = None) -> ImagePart:
        """The :class:`ImagePart` for a task's image value, or :class:`MediaError`.

        ``deadline`` is the ``time.monotonic()`` instant by which the caller needs
        the answer (the ``/predict`` request's deadline): a fetch ends by then,
        or by ``MEDIA_FETCH_TIMEOUT`` from now if that comes first.
        """
        if not isinstance(value, str) or not value.strip():
            raise MediaError(
                f"the image reference must be a non-empty string (a URL or a Label Studio path), got {value!r}"
            )
        value = value.strip()
        if value[:5].lower() == "data:":
            return self._data_url(value)
        bad = unsafe_chars(value)
        if bad:
            raise MediaError(
                f"the image reference {value[:100]!r} contains {bad}; whitespace, control characters and backslashes "
                "are not allowed in image URLs (percent-encode them, e.g. %20 for a space)"
            )
        if value.startswith("/") and not value.startswith("//"):
            return self._fetch(self._label_studio_url(value), deadline)
        origin = origin_of(value)
        if origin is None:
            raise self._not_http(value)
        if has_userinfo(value):
            raise MediaError(f"the image URL {_shown(value)!r} holds a user name or password (user@host); remove it")
        if self._origin is not None and origin == self._origin:
            return self._fetch(value, deadline)
        self._check_public(value)
        return ImagePart(url=value)

    def _label_studio_url(self, path: str) -> str:
        if not self.base:
            raise MediaError(
                f"the image {path[:100]!r} is stored in Label Studio; set LABEL_STUDIO_URL (e.g. "
                "http://localhost:8080) and LABEL_STUDIO_API_KEY so the backend can fetch it"
            )
        if self._origin is None:
            raise MediaError(
                f"LABEL_STUDIO_URL={self.base[:100]!r} is not an http(s) URL; set it to e.g. http://localhost:8080"
            )
        return f"{self.base}/{path.lstrip('/')}"

    @staticmethod
    def _not_http(value: str) -> MediaError:
        scheme = scheme_of(value)
        if scheme and scheme not in ("http", "https"):
            return MediaError(
                f"image URLs with the {scheme}: scheme are not fetched; use an http(s) URL, or let Label Studio "
                "serve the file (upload it, or use local-files / cloud storage) so the task holds a /data/... path"
            )
        if scheme:
            return MediaError(
                f"the image URL {value[:100]!r} is not a valid http(s) URL (http://host/path), or URL parsers "
                "disagree on its host"
            )
        return MediaError(
            f"the image reference {value[:100]!r} is neither an http(s) URL (http://host/path) "
            "nor a Label Studio path (/data/...)"
        )

    def _check_public(self, url: str, *, via: str = "") -> None:
        if self.allow_internal:
            return
        reason = internal_reason(url)
        if reason:
            raise MediaError(
                f"the image URL {_shown(url)}{via} points to an internal host ({reason}), which is not passed to the "
                f"model provider or fetched; {ALLOW_HINT}"
            )

    # ------------------------------------------------------------------
    def _data_url(self, value: str) -> ImagePart:
        head, sep, payload = value.partition(",")
        if not sep or ";base64" not in head.lower():
            raise MediaError("a data: image must be base64-encoded (data:image/png;base64,...)")
        media_type = head[5:].split(";")[0].strip().lower() or None
        if media_type and not media_type.startswith("image/"):
            raise MediaError(f"a data: URL of type {media_type} is not an image")
        if len(payload) * 3 // 4 > self.max_bytes:
            raise MediaError(f"the inline image is larger than {self.max_bytes // (1024 * 1024)} MB")
        try:
            data = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            raise MediaError("the data: image is not valid base64") from None
        if not data:
            raise MediaError("the data: image is empty")
        return ImagePart(data=data, media_type=media_type or sniff_media_type(data))

    # -- fetching from Label Studio -------------------------------------
    def _fetch(self, url: str, deadline: float | None) -> ImagePart:
        """An image on the Label Studio origin, fetched with the key, following checked redirects."""
        end = time.monotonic() + self.timeout
        if deadline is not None:
            end = min(end, deadline)
        shown = _shown(url)
        try:
            with self.fetcher.slot(end):
                return self._follow(url, end)
        except FetchDeadline:
            raise MediaError(
                f"fetching the image {shown} timed out (MEDIA_FETCH_TIMEOUT is {self.timeout:g} s, and a /predict "
                "request stops its fetches at its PREDICT_DEADLINE)"
            ) from None
        except httpx.HTTPError as exc:
            raise MediaError(
                f"could not fetch the image {shown} from Label Studio ({type(exc).__name__}); check LABEL_STUDIO_URL"
            ) from None

    def _on_label_studio(self, url: str) -> bool:
        """Whether ``url`` is on LABEL_STUDIO_URL's origin (scheme, host, port), read the same by every parser."""
        return (
            self._origin is not None and unsafe_chars(url) is None and not has_userinfo(url)
            and origin_of(url) == self._origin
        )

    def _follow(self, url: str, end: float) -> ImagePart:
        # the key goes along only while every hop so far stayed on the Label Studio origin
        credentialed = True
        for _ in range(self.max_redirects + 1):
            credentialed = credentialed and self._on_label_studio(url)
            if not credentialed:
                self._check_public(url, via=" (a redirect from Label Studio)")
            hop = self._get(url, end, credentialed)
            if isinstance(hop, ImagePart):
                return hop
            url = hop
        raise MediaError(
            f"the image {_shown(url)} was redirected more than {self.max_redirects} times (MEDIA_MAX_REDIRECTS)"
        )

    def _open(self, method: str, url: str, end: float, *, credentialed: bool, **kwargs):
        """Every request goes through here: one that carries the key must be on Label Studio's origin."""
        if credentialed and not self._on_label_studio(url):
            raise MediaError(f"refusing to send LABEL_STUDIO_API_KEY to {_shown(url)}: not LABEL_STUDIO_URL's origin")
        return self.fetcher.open(method, url, end, **kwargs)

    def _get(self, url: str, end: float, credentialed: bool) -> ImagePart | str:
        """The image at ``url``, or the URL it redirects to."""
        for attempt in (0, 1):
            headers = self._auth_header(end, refresh=attempt == 1) if credentialed else {}
            with self._open("GET", url, end, credentialed=bool(headers), headers=headers) as resp:
                if resp.status_code == 401 and headers and attempt == 0 and self._access is not None:
                    continue  # expired access token: refresh once
                if resp.has_redirect_location:
                    return self._next_hop(url, resp.headers["location"])
                return self._read(resp, url, end)
        raise MediaError(f"Label Studio refused the image {_shown(url)} (HTTP 401); check LABEL_STUDIO_API_KEY")

    @staticmethod
    def _next_hop(url: str, location: str) -> str:
        bad = unsafe_chars(location)
        if bad:
            raise MediaError(f"the image {_shown(url)} redirects to a location containing {bad}; not followed")
        target = urljoin(url, location)
        if origin_of(target) is None or has_userinfo(target):
            raise MediaError(
                f"the image {_shown(url)} redirects to {_shown(target)!r}, not an http(s) URL; not followed"
            )
        return target

    def _auth_header(self, end: float, refresh: bool = False) -> dict:
        key = self.settings.label_studio_api_key
        if not key:
            return {}
        if not _is_jwt(key):
            return {"Authorization": f"Token {key}"}
        if not self._lock.acquire(timeout=max(0.0, end - time.monotonic())):  # another fetch is refreshing
            raise FetchDeadline()
        try:
            if self._access is None or refresh:
                self._access = self._refresh(key, end)
            return {"Authorization": f"Bearer {self._access}"}
        finally:
            self._lock.release()

    def _refresh(self, key: str, end: float) -> str:
        """Exchange the personal access token (a JWT refresh token) for an access token."""
        url = f"{self.base}/api/token/refresh"
        try:
            with self._open("POST", url, end, credentialed=True, json={"refresh": key}) as resp:
                body = self.fetcher.read(resp, end, 1 << 20, "the token refresh answer")
                status, ctype = resp.status_code, resp.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise MediaError(
                f"could not reach Label Studio at {self.base} to refresh the token ({type(exc).__name__})"
            ) from None
        try:
            access = json.loads(body)["access"] if status == 200 and ctype.startswith("application/json") else None
        except (ValueError, KeyError, TypeError):
            access = None
        if not isinstance(access, str):
            raise MediaError(
                f"Label Studio at {self.base} refused LABEL_STUDIO_API_KEY (HTTP {status} on token refresh); "
                "set it to a valid personal access token or legacy token"
            )
        return access

    def _read(self, resp: httpx.Response, url: str, end: float) -> ImagePart:
        shown = _shown(url)
        if resp.status_code in (401, 403):
            raise MediaError(
                f"Label Studio refused the image {shown} (HTTP {resp.status_code}); set LABEL_STUDIO_API_KEY to a "
                "token of a user who can see the project"
            )
        if resp.status_code != 200:
            raise MediaError(f"Label Studio answered HTTP {resp.status_code} for the image {shown}")
        data = self.fetcher.read(resp, end, self.max_bytes, shown)
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        sniffed = sniff_media_type(data)
        if not ctype.startswith("image/") and sniffed is None:
            raise MediaError(f"{shown} is not an image (content type {ctype or 'unknown'}); is the path right?")
        if not data:
            raise MediaError(f"the image {shown} is empty")
        return ImagePart(data=data, media_type=ctype if ctype.startswith("image/") else sniffed)
