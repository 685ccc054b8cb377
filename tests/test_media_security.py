"""Security of image fetching: the Label Studio key never leaves Label Studio's origin, redirects are
checked hop by hop, internal hosts are refused, and slow servers cannot hold threads or connections.

Every server here is bound to 127.0.0.1: a stand-in Label Studio, and a *trap* on another port that
records anything it receives (it must never see a credential).
"""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from urllib.parse import quote, unquote

import pytest

from backend.media import MediaResolver
from backend.prompt import render
from backend.schema import build_plan
from core.errors import MediaError
from core.settings import Settings
from tests.test_media import Server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
TOKEN = "legacy-token-SECRET-123"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.U0VDUkVULXNpZ25hdHVyZQ"
ACCESS = "access-SECRET-1"


def image(data=PNG):
    return 200, {"Content-Type": "image/png", "Content-Length": str(len(data))}, data


def redirect(location):
    return 302, {"Location": location, "Content-Length": "0"}, b""


def trickle(stop: threading.Event, ended: threading.Event, every: float = 0.2):
    """A body that sends one byte every ``every`` seconds for a minute (an attack on threads and pools)."""
    yield PNG[:8]
    try:
        for _ in range(int(60 / every)):
            if stop.wait(every):
                return
            yield b"\x00"
    finally:
        ended.set()


def carries_credential(req) -> bool:
    blob = json.dumps(req["headers"]) + req["path"] + req["body"].decode("latin-1")
    return "authorization" in blob.lower() or any(s in blob for s in (TOKEN, JWT, ACCESS, "SECRET"))


@pytest.fixture
def trap():
    """Another origin on the same host: anything it receives is recorded; a credential fails the test."""
    with Server(lambda method, path, headers, body: image()) as srv:
        yield srv


@pytest.fixture
def ls(trap):
    """A stand-in Label Studio: needs the token; redirects and slow routes for the tests below."""
    state = SimpleNamespace(stop=threading.Event(), ended=threading.Event(), hops=0, slow_refresh=False)

    def routes(method, path, headers, body):
        if path == "/api/token/refresh" and method == "POST":
            if state.slow_refresh:
                state.stop.wait(20)
            ok = json.loads(body or b"{}").get("refresh") == JWT
            return (200, {"Content-Type": "application/json"}, json.dumps({"access": ACCESS}).encode()) if ok else \
                (401, {"Content-Type": "application/json"}, b"{}")
        auth = headers.get("Authorization", "")
        if auth not in (f"Token {TOKEN}", f"Bearer {ACCESS}"):
            return 401, {"Content-Length": "0"}, b""
        return ls_route(path, state, trap)

    with Server(routes) as srv:
        srv.state = state
        yield srv
        state.stop.set()


def ls_route(path, state, trap):
    if path == "/data/upload/1/cat.png":
        return image()
    if path == "/data/upload/1/moved.png":
        return redirect("/data/upload/1/cat.png")  # a relative redirect on Label Studio itself
    if path.startswith("/redirect-to/"):  # /redirect-to/<percent-encoded Location>, TRAP = the trap's host:port
        return redirect(unquote(path[len("/redirect-to/"):]).replace("TRAP", f"127.0.0.1:{trap.port}"))
    if path == "/loop":
        state.hops += 1
        return redirect("/loop")
    if path == "/data/upload/1/trickle.png":
        return 200, {"Content-Type": "image/png"}, trickle(state.stop, state.ended)
    if path == "/data/upload/1/slow-headers.png":
        state.stop.wait(20)
        return image()
    return 404, {"Content-Length": "0"}, b""


def redirect_path(location: str) -> str:
    return "/redirect-to/" + quote(location, safe="")


def resolver(ls, key=TOKEN, **settings):
    return MediaResolver(Settings(label_studio_url=ls.url, label_studio_api_key=key, **settings))


# --- 1. the key never reaches another origin ---------------------------------------------

def corpus(ls_port: int, port: int) -> list[str]:
    """Values that try to turn a Label Studio path or URL into a request to 127.0.0.1:port."""
    h, lsh = f"127.0.0.1:{port}", f"127.0.0.1:{ls_port}"
    sneaky = [" ", "\t", "\n", "\r\n", "\x00", "\x01", "\x1f", "\x7f", "\u00a0", "\u200b", "\u3000", "\u2028",
              "\ufeff", "\u00ad", "\\", "\\\\"]
    values = [f"/{c}//{h}/x" for c in sneaky] + [f"/{c}//localhost:{port}/x" for c in ("\t", " ", "\x0b")]
    values += [
        f"//{h}/x", f"///{h}/x", f"//localhost:{port}/x", f"/\\/{h}/x", f"/./\t/{h}/x", f"/..//{h}/x",
        f"/%2F%2F{h}/x", f"/%2f/{h}/x", f"/@{h}/x", f"/:@{h}/x",
        f"http://{h}/x", f"HTTP://{h}/x", f"hTTp://localhost:{port}/x", f"https://{h}/x", f"ftp://{h}/x",
        f"http:/{h}/x", f"http:{h}/x", f"http:\\\\{h}/x", f" http://{h}/x",
        f"http://{lsh}@{h}/x", f"http://user:pass@{h}/x", f"http://{h}\\@{lsh}/x", f"http://{lsh}\\@{h}/x",
        f"http://{lsh}\t@{h}/x", f"http://{lsh}#@{h}/x", f"http://{lsh}?@{h}/x", f"http://{lsh}/x@{h}",
        f"http://127。0。0。1:{port}/x", f"http://127。0。0。1:{ls_port}/x", f"http://127．0．0．1:{port}/x",
        f"http://2130706433:{port}/x", f"http://0x7f.1:{port}/x", f"http://0177.0.0.1:{port}/x",
        f"http://127.1:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x", f"http://[::1]:{port}/x",
        f"http://{h}:{ls_port}/x", f"http://{lsh}:{port}/x", f"http://%31%32%37.0.0.1:{port}/x",
        f"http://127.0.0.1%3A{port}/x", f"http://localhost.:{port}/x", f"http://LOCALHOST:{port}/x",
        f"http://127.0.0.1\x00:{ls_port}@{h}/", f"http://127.0.0.1:{port}\u00ad/x", f"/data/upload/1/cat.png\n//{h}",
        f"{lsh}/x", f"http://127.0.0.1:{'４０'}/x", f"http://127.0.0.1:{port}./x",
    ]
    return values


def run_corpus(ls, trap, **settings) -> tuple[int, int, dict]:
    values = corpus(ls.port, trap.port)
    outcomes = dict.fromkeys(["MediaError (refused, or Label Studio said 404)", "passed on as a URL",
                              "fetched from Label Studio"], 0)
    for value in values:
        try:
            part = resolver(ls, **settings).resolve(value)
        except MediaError:
            outcomes["MediaError (refused, or Label Studio said 404)"] += 1
            continue
        if part.url is not None:
            assert part.url == value.strip(), value  # passed on untouched, never fetched by us
            outcomes["passed on as a URL"] += 1
        else:
            outcomes["fetched from Label Studio"] += 1
    leaks = sum(carries_credential(r) for r in trap.requests)
    outcomes["requests Label Studio received"] = len(ls.requests)
    return len(values), leaks, outcomes


@pytest.mark.parametrize("key", [TOKEN, JWT], ids=["legacy-token", "personal-access-token"])
@pytest.mark.parametrize("allow_internal", [False, True])
def test_no_value_sends_the_key_to_another_origin(ls, trap, key, allow_internal):
    size, leaks, outcomes = run_corpus(ls, trap, key=key, allow_internal_image_urls=allow_internal)
    print(f"\ncorpus: {size} values, key={'jwt' if key == JWT else 'token'}, allow_internal={allow_internal}: "
          f"{outcomes}; leaks: {leaks}")
    assert size >= 40
    assert leaks == 0
    assert trap.requests == []  # nothing at all reaches the other port
    assert outcomes["requests Label Studio received"] >= 5  # paths that stay on Label Studio are still fetched


@pytest.mark.parametrize("value", ["/ //127.0.0.1:{port}/x", "/\t//localhost:{port}/x", "/\x01//127.0.0.1:{port}/x"])
def test_the_reported_values_are_refused_with_a_clear_message(ls, trap, value):
    with pytest.raises(MediaError, match="whitespace, control characters and backslashes are not allowed"):
        resolver(ls).resolve(value.format(port=trap.port))
    assert trap.requests == []


def test_a_key_is_never_sent_off_origin_even_if_a_caller_asks(ls, trap):
    r = resolver(ls)
    with pytest.raises(MediaError, match="refusing to send LABEL_STUDIO_API_KEY"):
        r._open("GET", f"{trap.url}/x", time.monotonic() + 5, credentialed=True, headers={})
    assert trap.requests == []


@pytest.mark.parametrize("base", ["localhost:8080", "ftp://ls.example.com", "http://ls example.com"])
def test_unusable_label_studio_url_is_named(base):
    with pytest.raises(MediaError, match="LABEL_STUDIO_URL=.* is not an http"):
        MediaResolver(Settings(label_studio_url=base, label_studio_api_key=TOKEN)).resolve("/data/upload/1/cat.png")


def test_label_studio_paths_and_urls_still_work(ls):
    r = resolver(ls, key=JWT)
    assert r.resolve("/data/upload/1/cat.png").data == PNG
    assert r.resolve(f"{ls.url}/data/upload/1/cat.png").data == PNG
    assert r.resolve(f"HTTP://127.0.0.1:{ls.port}/data/upload/1/cat.png").data == PNG


# --- 3. redirects: every hop is checked ----------------------------------------------------

def test_redirect_within_label_studio_keeps_the_key(ls):
    assert resolver(ls).resolve("/data/upload/1/moved.png").data == PNG
    assert [r["path"] for r in ls.requests] == ["/data/upload/1/moved.png", "/data/upload/1/cat.png"]
    assert all(r["headers"]["Authorization"] == f"Token {TOKEN}" for r in ls.requests)


def test_redirect_to_another_port_is_refused_by_default(ls, trap):
    with pytest.raises(MediaError, match="internal host.*ALLOW_INTERNAL_IMAGE_URLS=true"):
        resolver(ls).resolve(redirect_path("http://TRAP/bucket/cat.png"))
    assert trap.requests == []


def test_redirect_to_an_allowed_internal_host_is_followed_without_the_key(ls, trap):
    assert resolver(ls, allow_internal_image_urls=True).resolve(redirect_path("http://TRAP/bucket/cat.png")).data == PNG
    (req,) = trap.requests
    assert not carries_credential(req)


def test_key_not_sent_to_label_studio_once_a_hop_left_it(ls, trap):
    """Label Studio -> another origin -> back to Label Studio: the last hop is chosen by the other
    origin, so it goes without the key (and Label Studio answers 401)."""
    with Server(lambda m, p, h, b: redirect(f"{ls.url}/data/upload/1/cat.png")) as bouncer:
        r = resolver(ls, allow_internal_image_urls=True)
        with pytest.raises(MediaError, match="HTTP 401"):
            r.resolve(redirect_path(f"{bouncer.url}/x"))
    assert [("Authorization" in q["headers"]) for q in ls.requests] == [True, False]
    assert not carries_credential(bouncer.requests[0])


@pytest.mark.parametrize("location, message", [
    ("http://TRAP /x", "containing"), ("/ //TRAP/x", "containing"), ("http://TRAP\\@example.com/", "containing"),
    ("javascript:alert(1)", "invalid URL"), ("ftp://TRAP/x", "not an http"), ("http://user:pw@TRAP/x", "not an http"),
    ("http:/TRAP/x", "HTTP 404"),  # read as a path on Label Studio, like urljoin does: asked there, with the key
    ("//127.0.0.1:99999/x", "not an http"), ("http://TRAP:99999/x", "invalid URL"),
])
def test_bad_redirect_locations_are_not_followed(ls, trap, location, message):
    r = resolver(ls, allow_internal_image_urls=True)
    with pytest.raises(MediaError, match=message):
        r.resolve(redirect_path(location))
    assert trap.requests == []


def test_redirect_loops_end(ls):
    with pytest.raises(MediaError, match="redirected more than 3 times"):
        resolver(ls, media_max_redirects=3).resolve("/loop")
    assert ls.state.hops == 4


# --- 4. internal hosts are not passed to the provider --------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.5/a.png",
    "http://192.168.1.10/a.png", "http://172.16.0.1/a.png", "http://100.64.0.1/a.png", "http://0.0.0.0/a.png",
    "http://224.0.0.1/a.png", "http://[::1]/a.png", "http://[fe80::1]/a.png", "http://[fd00::1]/a.png",
    "http://[::ffff:10.0.0.1]/a.png", "http://redis/", "http://localhost:8080/a.png", "http://LocalHost./a.png",
    "http://metadata.google.internal/computeMetadata/v1/", "http://printer.local/a.png", "http://foo.localhost/",
    "http://2852039166/latest/", "http://0xa9.254.169.254/", "http://169.254.169.254./",
    "https://%6c%6f%63%61%6c%68%6f%73%74/", "http://0x7f000001/", "http://[::]/",
    "http://[::ffff:7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/",
])
def test_internal_image_urls_are_refused(url):
    with pytest.raises(MediaError, match="internal host.*ALLOW_INTERNAL_IMAGE_URLS=true"):
        MediaResolver(Settings()).resolve(url)


@pytest.mark.parametrize("url", [
    "http://①②⑦.0.0.1/", "http://999.1.1.1/", "http:///a.png", "http://127。0。0。1/",  # parsers disagree on the host
    "http://127.0.0.1:80:80/", "http://[::1/",
])
def test_unreadable_hosts_are_refused(url):
    with pytest.raises(MediaError, match="not a valid http"):
        MediaResolver(Settings(allow_internal_image_urls=True)).resolve(url)


@pytest.mark.parametrize("url", [
    "https://images.example.com/cat.png", "http://8.8.8.8/a.png", "https://[2606:4700::1111]/a.png",
    "https://bücher.example/a.png", "https://cdn.example.co.uk:8443/a.png?x=1",
])
def test_public_image_urls_are_passed_on(url):
    assert MediaResolver(Settings()).resolve(url).url == url


def test_internal_image_urls_allowed_by_setting():
    r = MediaResolver(Settings.from_env({"ALLOW_INTERNAL_IMAGE_URLS": "true"}))
    assert r.resolve("http://redis:6379/a.png").url == "http://redis:6379/a.png"
    assert r.resolve("http://10.0.0.5/a.png").url == "http://10.0.0.5/a.png"


# --- 2. slow servers: deadlines, bounded concurrency, nothing left behind ------------------

def _settled_threads(baseline: int, wait: float = 2.0) -> int:
    end = time.monotonic() + wait
    while threading.active_count() > baseline and time.monotonic() < end:
        time.sleep(0.05)
    return threading.active_count()


def test_trickling_body_stops_at_the_request_deadline(ls):
    r = resolver(ls, media_fetch_timeout=30.0)
    start = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        r.resolve("/data/upload/1/trickle.png", deadline=start + 1.0)
    assert 0.9 < time.monotonic() - start < 2.5  # the body would trickle for a minute
    assert ls.state.ended.wait(2)  # the server saw the connection go


def test_slow_headers_stop_at_the_fetch_timeout(ls):
    r = resolver(ls, media_fetch_timeout=0.8)
    start = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        r.resolve("/data/upload/1/slow-headers.png")
    assert time.monotonic() - start < 2.0  # the server would wait 20 s


def test_deadline_already_passed_fetches_nothing(ls):
    with pytest.raises(MediaError, match="timed out"):
        resolver(ls).resolve("/data/upload/1/cat.png", deadline=time.monotonic() - 1)
    assert ls.requests == []


def test_slow_fetches_release_threads_and_connections(ls):
    r = resolver(ls, media_fetch_concurrency=2)
    baseline = threading.active_count()
    errors: list[str] = []
    deadline = time.monotonic() + 1.0

    def fetch():
        try:
            r.resolve("/data/upload/1/trickle.png", deadline=deadline)
        except MediaError as exc:
            errors.append(str(exc))

    workers = [threading.Thread(target=fetch) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(3)
    assert time.monotonic() - deadline < 1.5
    assert len(errors) == 8 and all("timed out" in e for e in errors)
    assert ls.peak <= 2  # MEDIA_FETCH_CONCURRENCY held; the other six waited, then gave up
    assert _settled_threads(baseline) <= baseline  # no watchdog or fetch thread left behind
    assert r.fetcher.client()._transport._pool.connections == []  # nothing held in the pool
    start = time.monotonic()
    assert r.resolve("/data/upload/1/cat.png", deadline=time.monotonic() + 5).data == PNG
    assert time.monotonic() - start < 2.0


def test_render_hands_the_request_deadline_to_the_resolver(ls):
    plan = build_plan('<View><Image name="img" value="$image"/><Choices name="c" toName="img">'
                      '<Choice value="Cat"/><Choice value="Dog"/></Choices></View>')
    version = SimpleNamespace(instruction="What is it?", fields=[])
    task = {"data": {"image": "/data/upload/1/trickle.png"}}
    start = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        render(version, plan, task, resolver(ls), deadline=start + 0.7)
    assert time.monotonic() - start < 2.0


def test_waiting_for_another_fetchs_token_refresh_ends_at_the_deadline(ls):
    ls.state.slow_refresh = True
    r = resolver(ls, key=JWT)
    first = threading.Thread(target=lambda: pytest.raises(MediaError, r.resolve, "/data/upload/1/cat.png",
                                                          deadline=time.monotonic() + 3))
    first.start()
    time.sleep(0.2)  # the first fetch now holds the token lock, refreshing slowly
    start = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        r.resolve("/data/upload/1/cat.png", deadline=start + 0.5)
    assert time.monotonic() - start < 1.8  # not the 3 s the other fetch may take
    first.join(5)


# --- against a real Label Studio 1.23.2 -------------------------------------------------------

@pytest.mark.labelstudio
def test_real_label_studio_upload_is_fetched_and_tricks_are_refused(label_studio, trap):
    import httpx

    pid = label_studio.create_project('<View><Image name="img" value="$image"/></View>', title="media security")
    auth = {"Authorization": f"Token {label_studio.token}"}
    reply = httpx.post(f"{label_studio.url}/api/projects/{pid}/import", headers=auth, timeout=60,
                       files={"file": ("cat.png", PNG, "image/png")})
    assert reply.status_code == 201, reply.text
    tasks = httpx.get(f"{label_studio.url}/api/tasks", params={"project": pid}, headers=auth, timeout=60).json()
    path = tasks["tasks"][0]["data"]["image"]
    assert path.startswith("/data/upload/")
    r = MediaResolver(label_studio.settings())
    assert r.resolve(path, deadline=time.monotonic() + 30).data == PNG
    assert r.resolve(label_studio.url + path).data == PNG
    for value in corpus(int(label_studio.url.rsplit(":", 1)[1]), trap.port):
        with pytest.raises(MediaError):
            r.resolve(value)
    assert [q for q in trap.requests if carries_credential(q)] == []
    with pytest.raises(MediaError, match="HTTP 401"):
        MediaResolver(Settings(label_studio_url=label_studio.url, label_studio_api_key="wrong-key")).resolve(path)
