"""Checks on image URLs: which characters are allowed, which origin a URL is on, and which hosts are internal.

Three questions, answered without any network access (no DNS):

* :func:`unsafe_chars` -- does a value hold whitespace, control or format
  characters, or a backslash?  URL parsers strip or remove such characters
  (``"/ //evil/x"``, ``"/\\t//evil/x"``), or read ``\\`` as ``/``, so a value
  that holds one can name another host than it seems to; such values are
  refused.
* :func:`origin_of` -- the ``(scheme, host, port)`` of an http(s) URL, as
  *both* Python's ``urllib.parse`` and ``httpx`` (the client that sends the
  request) read it; ``None`` when they disagree or either cannot read it.
  The Label Studio key is only ever sent to a URL whose origin equals
  ``LABEL_STUDIO_URL``'s.
* :func:`internal_reason` -- why a URL's host is internal (loopback, private,
  link-local, multicast, unspecified, reserved, or a name without a dot such
  as ``redis`` or ``localhost``), or ``None`` for a public host.  The host is
  judged as written, after the normalisations URL parsers apply (IDNA/UTS46
  mapping such as ``127。0。0。1`` -> ``127.0.0.1``, the legacy IPv4 forms
  ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, IPv4-mapped IPv6).  Names are
  *not* resolved: a public name whose DNS answer is an internal address is not
  detected here.  A URL we pass on is fetched by the provider, so guarding
  against DNS rebinding is the provider's concern.

>>> unsafe_chars("/data/upload/1/cat.png") is None
True
>>> unsafe_chars("/ //127.0.0.1:9/x")
"' ' (U+0020)"
>>> origin_of("HTTP://Example.COM/a.png")
('http', 'example.com', 80)
>>> origin_of("http://example.com:8080:80/") is None
True
>>> internal_reason("https://images.example.com/cat.png") is None
True
>>> internal_reason("http://127。0。0。1/")
'127.0.0.1 is a loopback address'
>>> internal_reason("http://2130706433/")
'127.0.0.1 is a loopback address'
>>> internal_reason("http://redis:6379/")
"'redis' is a name without a dot (an internal host name)"
"""
from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from urllib.parse import urlsplit

import httpx
import idna

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}
# suffixes that name hosts of a private network, never the public internet
INTERNAL_SUFFIXES = ("localhost", "local", "internal", "intranet", "lan", "home.arpa", "corp", "private")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def unsafe_chars(value: str) -> str | None:
    """The first character that makes ``value`` unsafe to parse as a URL (shown with its code point), or None."""
    for ch in value:
        if ch == "\\" or ch.isspace() or unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            return f"{ch!r} (U+{ord(ch):04X})"
    return None


def _urllib_origin(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _httpx_origin(url: str) -> Origin | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    return scheme, parsed.host.lower(), parsed.port or DEFAULT_PORTS[scheme]


def origin_of(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) URL when ``urllib`` and ``httpx`` agree on it, else None."""
    first = _urllib_origin(url)
    return first if first is not None and first == _httpx_origin(url) else None


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased ('' when it has none or cannot be parsed)."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def has_userinfo(url: str) -> bool:
    """Whether the URL's authority holds a user name or password (``user:pass@host``); True when unparseable."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return True


def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host means when its last label is numeric (as WHATWG and inet_aton read it), else None.

    Raises ValueError for a numeric-looking host that is no valid address (``999.1.1.1``).
    """
    labels = host.rstrip(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except OSError:
        raise ValueError(f"{host!r} looks like an IP address but is not a valid one") from None


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, NAT64), if any."""
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def _ip_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        return _ip_reason(embedded)
    for kind in ("loopback", "private", "link_local", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def _host_reason(host: str) -> str | None:
    """Why one (already lower-cased, IDNA-mapped) host is internal, or None."""
    if "%" in host:
        return f"{host!r} holds a percent sign (percent-encoded host names and IPv6 zones are not accepted)"
    if ":" in host:
        try:
            return _ip_reason(ipaddress.IPv6Address(host.strip("[]")))
        except ValueError:
            return f"{host!r} is not a valid IPv6 address"
    ipv4 = _loose_ipv4(host)  # ValueError for a broken numeric host; the caller reports it
    if ipv4 is not None:
        return _ip_reason(ipv4)
    name = host.rstrip(".")
    if "." not in name:
        return f"{name!r} is a name without a dot (an internal host name)"
    if any(name == s or name.endswith("." + s) for s in INTERNAL_SUFFIXES):
        return f"{name!r} is a name of a private network"
    return None


def _hosts(url: str) -> set[str]:
    """The host as every parser we know would read it (urllib, httpx, IDNA/UTS46 mapping), lower-cased."""
    raw = urlsplit(url).hostname or ""
    hosts = {raw.lower()}
    hosts.add(httpx.URL(url).host.lower())  # raises httpx.InvalidURL for a host httpx cannot read
    if raw and not raw.isascii():
        hosts.add(idna.encode(raw, uts46=True).decode("ascii").lower())  # raises idna.IDNAError
    return hosts


def internal_reason(url: str) -> str | None:
    """Why the http(s) URL's host is internal or unreadable, or None when it is a public host (see module doc)."""
    try:
        hosts = _hosts(url)
        reasons = [_host_reason(h) for h in sorted(hosts)]
    except (httpx.InvalidURL, idna.IDNAError, ValueError, UnicodeError) as exc:
        return f"its host cannot be read unambiguously ({exc})"
    return next((r for r in reasons if r), None)
