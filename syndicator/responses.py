"""HTTP semantics of a rendered document, without a framework: conditional GET (RFC 9110), gzip,
content negotiation for browsers, and the response headers. Used by the Flask views and by the
WSGI fast path for feeds, so both answer exactly alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from functools import lru_cache

from .documents import SECURITY_HEADERS, Document

__all__ = ["SECURITY_HEADERS", "respond", "accepts_gzip", "is_browser_navigation", "not_modified"]
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json")
Getter = Callable[[str], "str | None"]  # request header by name, None when absent


@lru_cache(maxsize=256)
def _qualities(header: str) -> dict[str, float]:
    """Media ranges or codings of an Accept-style header with their q values."""
    result: dict[str, float] = {}
    for part in header.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        result[name] = quality
    return result


def accepts_gzip(header: str | None) -> bool:
    if not header:
        return False
    q = _qualities(header)
    return q.get("gzip", q.get("x-gzip", q.get("*", 0.0))) > 0


def is_browser_navigation(accept: str | None) -> bool:
    """A browser asks for text/html by name and for no feed type; feed readers name feed types or */*."""
    if not accept:
        return False
    named = {name for name, quality in _qualities(accept).items() if quality > 0}
    return "text/html" in named and not named.intersection(FEED_TYPES)


def etag_matches(header: str, doc: Document) -> bool:
    """Weak comparison (RFC 9110 13.1.2) against every representation of the document."""
    if header.strip() == "*":
        return True
    ours = doc.all_etags
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') in ours:
            return True
    return False


def not_modified(doc: Document, get: Getter) -> bool:
    inm = get("If-None-Match")
    if inm is not None:  # If-None-Match wins over If-Modified-Since when both are sent
        return etag_matches(inm, doc)
    ims = get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        return doc.last_modified.replace(microsecond=0) <= since
    return False


def respond(doc: Document, get: Getter) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body for a GET of `doc` (a HEAD drops the body afterwards)."""
    gzipped = accepts_gzip(get("Accept-Encoding"))
    browser = bool(doc.browser_type) and is_browser_navigation(get("Accept"))
    etag = ("ETag", doc.variant_etag(gzipped=gzipped, browser=browser))
    if not_modified(doc, get):
        # RFC 9110 15.4.5: a 304 carries ETag, Cache-Control and Vary as the 200 would, and no other
        # metadata: a cache keeps the stored response's other headers (Link, Last-Modified, the security
        # headers), so leaving them out loses nothing and keeps every poll's answer small.
        return 304, [etag, *doc.revalidation_headers], b""
    headers = [etag, *doc.common_headers]
    body = doc.gzip if gzipped else doc.body
    headers.append(("Content-Type", doc.browser_type if browser else doc.content_type))
    headers.append(("Content-Length", str(len(body))))
    if gzipped:
        headers.append(("Content-Encoding", "gzip"))
    return 200, headers, body
