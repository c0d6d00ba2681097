"""URL rules: which URLs may reach a feed (absolute http(s)), the canonical story URL, entry ids, slugs."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

_URL_FORBIDDEN = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
# Lower-case http(s) scheme, a host of lower-case letters, digits, dots and dashes (no user, port or IPv6
# brackets), then printable ASCII: urlsplit accepts these as they are.
_PLAIN_URL = re.compile(r"https?://[a-z0-9.-]+(?:[/?#][!-~]*)?")
_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|ocid|cmpid|ref|ref_src)$", re.I)

def absolute_url(value: str, site_url: str) -> str | None:
    """An http(s) URL, or None. Relative URLs resolve against `site_url` when one is configured."""
    value = value.strip()
    if not value or _URL_FORBIDDEN.search(value):
        return None
    if _PLAIN_URL.fullmatch(value):
        return value  # what parsed_absolute_url returns for it, without parsing
    return parsed_absolute_url(value, site_url)


def parsed_absolute_url(value: str, site_url: str) -> str | None:
    """absolute_url's general path, for a stripped value with no whitespace or control characters."""
    try:
        parts = urlsplit(value)
        if not parts.scheme:
            if not site_url or value.startswith("//"):
                return None
            value = urljoin(site_url.rstrip("/") + "/", value.lstrip("/"))
            parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:  # malformed IPv6 host or port (found by fuzzing)
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme + value[len(parts.scheme):]  # schemes are case-insensitive; readers expect lower case


# A URL with a plain lower-case host, no port, query or fragment: its canonical form is host and path.
_PLAIN_STORY_URL = re.compile(r"https?://((?!www\.)[a-z0-9.-]+)(/[!-\"$->@-~]*)?")


def canonical_url(url: str) -> str:
    """The URL reduced to what identifies the story: no scheme, no `www.`, no default port,
    no trailing slash, no fragment, no tracking parameters, remaining parameters sorted."""
    match = _PLAIN_STORY_URL.fullmatch(url)
    if match is not None:  # what parsed_canonical_url returns for it, without parsing (~10 µs)
        return match[1] + ((match[2] or "").rstrip("/") or "/")
    return parsed_canonical_url(url)


def parsed_canonical_url(url: str) -> str:
    """canonical_url by way of the URL parser, for any URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/") or "/"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING.match(k)))
    return urlunsplit(("", host, path, query, "")).lstrip("/")


def item_id(url: str) -> str:
    """Stable entry id: urn:uuid of the canonical story URL (survives renames, rehosting, http->https)."""
    return "urn:uuid:" + uuid5_text(canonical_url(url))


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122: 10xx


def uuid5_text(name: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, name)), from the hash's hex digits (uuid.UUID costs ~8 µs)."""
    h = hashlib.sha1(_URL_NAMESPACE + name.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def slugify(name: str) -> str:
    """ASCII URL slug of a topic name; names with no ASCII letters get a stable hashed slug."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    folded = folded.replace("#", " sharp ").replace("+", " plus ").replace("&", " and ")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:80].strip("-")
    if not slug:
        slug = "topic-" + uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:8]
    return slug

