"""Turn the image reference in a task (a URL or a Label Studio path) into an ``ImagePart``.

What is allowed, and how it is sent to the model:

==========================================  =============================================
task value                                   result
==========================================  =============================================
``https://example.com/cat.jpg``             ``ImagePart(url=...)``: the provider fetches it
``/data/upload/3/cat.jpg``,                  fetched from ``LABEL_STUDIO_URL`` with
``/data/local-files/?d=images/cat.jpg``,     ``Authorization: Token <LABEL_STUDIO_API_KEY>``
any other ``/path`` on Label Studio          and sent inline (``ImagePart(data=..., media_type=...)``)
``http://<LABEL_STUDIO_URL host>/...``       the same (a private Label Studio URL)
``data:image/png;base64,...``                decoded and sent inline
``file:``, ``ftp:``, ``s3:``, ``gs:`` ...    :class:`~core.errors.MediaError`
a relative path without ``LABEL_STUDIO_URL`` :class:`~core.errors.MediaError` saying what to set
==========================================  =============================================

Only the Label Studio host and public http(s) URLs are ever contacted, and
only Label Studio gets the API key.  Inline images are capped at ``max_bytes``
(20 MB by default).  A personal access token (a JWT refresh token) is
exchanged for an access token at ``/api/token/refresh`` and sent as
``Bearer``; a legacy token is sent as ``Token``.
"""
from __future__ import annotations

import base64
import binascii
import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urljoin, urlsplit

import httpx

from core.errors import MediaError
from backend.providers.base import ImagePart, sniff_media_type

MAX_BYTES = 20 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port


def _is_jwt(key: str) -> bool:
    return key.startswith("eyJ") and key.count(".") == 2


class MediaResolver:
    """Resolves image references for one backend process (see the module docstring).

    Example::

        resolver = MediaResolver(settings)
        resolver.resolve("https://example.com/cat.jpg")   # ImagePart(url="https://example.com/cat.jpg")
        resolver.resolve("/data/upload/1/cat.jpg")         # ImagePart(data=b"\\xff\\xd8...", media_type="image/jpeg")
    """

    def __init__(self, settings, *, max_bytes: int = MAX_BYTES, timeout: float | None = None):
        self.settings = settings
        self.max_bytes = max_bytes
        self.timeout = float(timeout if timeout is not None else min(30.0, settings.provider_timeout))
        self.base = (settings.label_studio_url or "").rstrip("/") or None
        self._origin = _origin(self.base) if self.base else None
        self._access: str | None = None
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None  # made on the first fetch, then reused (one connection pool)

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                # stateless like a fresh client per fetch: no cookies are kept between requests
                no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
                self._http = httpx.Client(timeout=self.timeout, follow_redirects=True, cookies=no_cookies)
            return self._http

    # ------------------------------------------------------------------
    def resolve(self, value) -> ImagePart:
        """The :class:`ImagePart` for a task's image value, or :class:`MediaError`."""
        if not isinstance(value, str) or not value.strip():
            raise MediaError(f"the image reference must be a non-empty string (a URL or a Label Studio path), got {value!r}")
        value = value.strip()
        lower = value.lower()
        if lower.startswith("data:"):
            return self._data_url(value)
        if value.startswith("/") and not value.startswith("//"):
            if not self.base:
                raise MediaError(
                    f"the image {value[:100]!r} is stored in Label Studio; set LABEL_STUDIO_URL (e.g. "
                    "http://localhost:8080) and LABEL_STUDIO_API_KEY so the backend can fetch it"
                )
            return self._fetch(urljoin(self.base + "/", value.lstrip("/")))
        origin = _origin(value)
        if origin is None:
            scheme = urlsplit(value).scheme
            if scheme:
                raise MediaError(
                    f"image URLs with the {scheme}: scheme are not fetched; use an http(s) URL, or let Label Studio "
                    "serve the file (upload it, or use local-files / cloud storage) so the task holds a /data/... path"
                )
            raise MediaError(
                f"the image reference {value[:100]!r} is neither an http(s) URL nor a Label Studio path (/data/...)"
            )
        if self._origin is not None and origin == self._origin:
            return self._fetch(value)
        return ImagePart(url=value)

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

    def _auth_header(self, client: httpx.Client, refresh: bool = False) -> dict:
        key = self.settings.label_studio_api_key
        if not key:
            return {}
        if not _is_jwt(key):
            return {"Authorization": f"Token {key}"}
        with self._lock:
            if self._access is None or refresh:
                try:
                    resp = client.post(f"{self.base}/api/token/refresh", json={"refresh": key})
                except httpx.HTTPError as exc:
                    raise MediaError(f"could not reach Label Studio at {self.base} to refresh the token ({type(exc).__name__})") from None
                if resp.status_code != 200 or "access" not in (resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}):
                    raise MediaError(
                        f"Label Studio at {self.base} refused LABEL_STUDIO_API_KEY (HTTP {resp.status_code} on token refresh); "
                        "set it to a valid personal access token or legacy token"
                    )
                self._access = resp.json()["access"]
            return {"Authorization": f"Bearer {self._access}"}

    def _fetch(self, url: str) -> ImagePart:
        shown = url.split("?")[0][:200]
        client = self._client()
        try:
            for attempt in (0, 1):
                headers = self._auth_header(client, refresh=attempt == 1)
                with client.stream("GET", url, headers=headers) as resp:
                    if resp.status_code == 401 and attempt == 0 and self._access is not None:
                        continue  # expired access token: refresh once
                    return self._read(resp, shown)
        except httpx.TimeoutException:
            raise MediaError(f"fetching the image {shown} from Label Studio timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise MediaError(f"could not fetch the image {shown} from Label Studio ({type(exc).__name__}); check LABEL_STUDIO_URL") from None
        raise MediaError(f"Label Studio refused the image {shown} (HTTP 401); check LABEL_STUDIO_API_KEY")

    def _read(self, resp: httpx.Response, shown: str) -> ImagePart:
        if resp.status_code in (401, 403):
            raise MediaError(
                f"Label Studio refused the image {shown} (HTTP {resp.status_code}); set LABEL_STUDIO_API_KEY to a "
                "token of a user who can see the project"
            )
        if resp.status_code != 200:
            raise MediaError(f"Label Studio answered HTTP {resp.status_code} for the image {shown}")
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise MediaError(f"the image {shown} is {int(declared) / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.0f} MB")
        chunks, size = [], 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaError(f"the image {shown} is larger than {self.max_bytes / 1e6:.0f} MB")
            chunks.append(chunk)
        data = b"".join(chunks)
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        sniffed = sniff_media_type(data)
        if not ctype.startswith("image/") and sniffed is None:
            raise MediaError(f"{shown} is not an image (content type {ctype or 'unknown'}); is the path right?")
        if not data:
            raise MediaError(f"the image {shown} is empty")
        return ImagePart(data=data, media_type=ctype if ctype.startswith("image/") else sniffed)
