"""Image references -> ImageParts, against a tiny Label Studio stand-in on 127.0.0.1."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.media import MediaResolver
from core.errors import MediaError
from core.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 40
TOKEN = "legacy-token-123"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"


class Server:
    """A quiet loopback HTTP server recording every request; ``routes(method, path, headers, body)`` returns
    ``(status, headers, body bytes or an iterable of chunks)``.  ``peak``: most requests handled at once."""

    def __init__(self, routes):
        self.requests: list[dict] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                        "body": body})
                with server.lock:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    status, headers, payload = routes(self.command, self.path, self.headers, body)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    for chunk in [payload] if isinstance(payload, bytes) else payload:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except OSError:
                    pass  # the client hung up
                finally:
                    with server.lock:
                        server.active -= 1

            do_GET = do_POST = _handle

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _image(data, ctype):
    return 200, {"Content-Type": ctype, "Content-Length": str(len(data))}, data


@pytest.fixture
def other():
    """A second origin, to see what a redirect away from Label Studio carries."""
    with Server(lambda m, p, h, b: _image(PNG, "image/png")) as srv:
        yield srv


STATIC = {
    "/data/upload/1/cat.png": _image(PNG, "image/png"),
    "/data/upload/1/slow.png": _image(PNG, "image/png"),
    "/data/local-files/?d=images/dog.jpg": _image(JPEG, "image/jpeg"),
    "/data/upload/1/with-cookie.png": (
        200, {"Content-Type": "image/png", "Content-Length": str(len(PNG)), "Set-Cookie": "sessionid=s1; Path=/"}, PNG
    ),
    "/data/upload/1/untyped": _image(JPEG, "application/octet-stream"),
    "/data/upload/1/big.png": _image(PNG + b"\x00" * 5000, "image/png"),
    "/data/upload/1/page": (200, {"Content-Type": "text/html"}, b"<html>login</html>"),
}


@pytest.fixture
def ls(other):
    access = {"token": "access-1"}

    def routes(method, path, headers, body):
        auth = headers.get("Authorization", "")
        if path == "/api/token/refresh" and method == "POST":
            if json.loads(body or b"{}").get("refresh") == JWT:
                return 200, {"Content-Type": "application/json"}, json.dumps({"access": access["token"]}).encode()
            return 401, {"Content-Type": "application/json"}, b'{"detail": "bad token"}'
        if auth not in (f"Token {TOKEN}", f"Bearer {access['token']}"):
            return 401, {"Content-Type": "application/json"}, b'{"detail": "no credentials"}'
        if path == "/data/upload/1/streamed.png":
            return 200, {"Content-Type": "image/png"}, (PNG + b"\x00" * 1000 for _ in range(10))
        if path == "/data/upload/1/slow.png":
            time.sleep(1.5)
        if path == "/tasks/1/presign/?fileuri=czM6Ly9i":
            return 302, {"Location": f"{other.url}/bucket/cat.png", "Content-Length": "0"}, b""
        return STATIC.get(path) or (404, {"Content-Length": "0"}, b"")

    with Server(routes) as srv:
        srv.access = access
        yield srv


def resolver(ls, key=TOKEN, allow_internal=False, **kw):
    settings = Settings(
        label_studio_url=ls.url + "/", label_studio_api_key=key, allow_internal_image_urls=allow_internal
    )
    return MediaResolver(settings, **kw)


# --- passed through, never fetched --------------------------------------------------

def test_public_url_is_passed_as_url(ls):
    part = resolver(ls).resolve("https://images.example.com/cat.jpg?size=big")
    assert part.url == "https://images.example.com/cat.jpg?size=big" and part.data is None
    assert ls.requests == []


def test_data_url_is_decoded_inline():
    part = MediaResolver(Settings()).resolve("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert part.data == PNG and part.media_type == "image/png" and part.url is None


@pytest.mark.parametrize("value, message", [
    ("data:image/png,rawbytes", "base64"),
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/png;base64,", "empty"),
])
def test_bad_data_urls(value, message):
    with pytest.raises(MediaError, match=message):
        MediaResolver(Settings()).resolve(value)


# --- refused ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "file:///etc/passwd", "ftp://example.com/a.png", "s3://bucket/a.png", "gs://bucket/a.png", "javascript:alert(1)",
])
def test_other_schemes_are_refused(ls, value):
    with pytest.raises(MediaError, match="scheme are not fetched"):
        resolver(ls).resolve(value)
    assert ls.requests == []


@pytest.mark.parametrize("value", ["images/cat.png", "", None, 42, ["a.png"]])
def test_not_a_reference(ls, value):
    with pytest.raises(MediaError):
        resolver(ls).resolve(value)


def test_label_studio_path_without_label_studio_url_says_what_to_set():
    with pytest.raises(MediaError, match="set LABEL_STUDIO_URL.*LABEL_STUDIO_API_KEY"):
        MediaResolver(Settings()).resolve("/data/upload/1/cat.png")


# --- fetched from Label Studio with the token ------------------------------------------

def test_upload_path_fetched_inline_with_token(ls):
    part = resolver(ls).resolve("/data/upload/1/cat.png")
    assert part.data == PNG and part.media_type == "image/png" and part.url is None
    (req,) = ls.requests
    assert req["path"] == "/data/upload/1/cat.png"
    assert req["headers"]["Authorization"] == f"Token {TOKEN}"


def test_local_files_path_keeps_its_query(ls):
    part = resolver(ls).resolve("/data/local-files/?d=images/dog.jpg")
    assert part.data == JPEG and part.media_type == "image/jpeg"


def test_absolute_url_on_the_label_studio_host_is_fetched_with_token(ls):
    part = resolver(ls).resolve(f"{ls.url}/data/upload/1/cat.png")
    assert part.data == PNG
    assert ls.requests[0]["headers"]["Authorization"] == f"Token {TOKEN}"


def test_fetches_share_no_state_but_the_token(ls):
    r = resolver(ls)
    assert r.resolve("/data/upload/1/with-cookie.png").data == PNG
    assert r.resolve("/data/upload/1/cat.png").data == PNG
    assert [q["path"] for q in ls.requests] == ["/data/upload/1/with-cookie.png", "/data/upload/1/cat.png"]
    assert "Cookie" not in ls.requests[1]["headers"]  # a cookie Label Studio set is not sent back


def test_media_type_sniffed_when_not_declared(ls):
    assert resolver(ls).resolve("/data/upload/1/untyped").media_type == "image/jpeg"


def test_wrong_token_is_a_clear_error_without_the_key(ls):
    with pytest.raises(MediaError, match="HTTP 401.*LABEL_STUDIO_API_KEY") as info:
        resolver(ls, key="wrong-key-456").resolve("/data/upload/1/cat.png")
    assert "wrong-key-456" not in str(info.value)


def test_not_found(ls):
    with pytest.raises(MediaError, match="HTTP 404"):
        resolver(ls).resolve("/data/upload/1/nope.png")


def test_not_an_image(ls):
    with pytest.raises(MediaError, match="not an image"):
        resolver(ls).resolve("/data/upload/1/page")


def test_size_limit_declared_and_streamed(ls):
    with pytest.raises(MediaError, match="limit"):
        resolver(ls, max_bytes=1000).resolve("/data/upload/1/big.png")
    with pytest.raises(MediaError, match="larger than"):
        resolver(ls, max_bytes=5000).resolve("/data/upload/1/streamed.png")
    assert len(resolver(ls, max_bytes=20000).resolve("/data/upload/1/streamed.png").data) == 10 * (len(PNG) + 1000)


def test_timeout(ls):
    with pytest.raises(MediaError, match="timed out"):
        resolver(ls, timeout=0.3).resolve("/data/upload/1/slow.png")


def test_redirect_to_storage_does_not_carry_the_token(ls, other):
    # storage on this network (e.g. MinIO on 127.0.0.1) needs ALLOW_INTERNAL_IMAGE_URLS
    part = resolver(ls, allow_internal=True).resolve("/tasks/1/presign/?fileuri=czM6Ly9i")
    assert part.data == PNG
    (req,) = other.requests
    assert "Authorization" not in req["headers"]


def test_personal_access_token_is_refreshed_then_sent_as_bearer(ls):
    r = resolver(ls, key=JWT)
    assert r.resolve("/data/upload/1/cat.png").data == PNG
    refresh, get = ls.requests
    assert refresh["path"] == "/api/token/refresh" and json.loads(refresh["body"]) == {"refresh": JWT}
    assert get["headers"]["Authorization"] == "Bearer access-1"
    # the access token expires: one 401, one refresh, one retry
    ls.access["token"] = "access-2"
    assert r.resolve("/data/upload/1/cat.png").data == PNG
    paths = [q["path"] for q in ls.requests[2:]]
    assert paths == ["/data/upload/1/cat.png", "/api/token/refresh", "/data/upload/1/cat.png"]
    assert ls.requests[-1]["headers"]["Authorization"] == "Bearer access-2"


def test_bad_personal_access_token(ls):
    bad = JWT[:-3] + "xyz"
    with pytest.raises(MediaError, match="refused LABEL_STUDIO_API_KEY"):
        resolver(ls, key=bad).resolve("/data/upload/1/cat.png")
