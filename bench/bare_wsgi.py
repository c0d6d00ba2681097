"""The cheapest possible WSGI app: fixed feed bytes with an ETag, and 304 on a matching If-None-Match.

Run under gunicorn with the same worker settings as `syndicator serve`; the difference to our numbers is
what Flask, routing and our own code cost. BENCH_BODY names the file whose bytes it serves."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable

with open(os.environ["BENCH_BODY"], "rb") as _f:  # read once at import, in each worker
    BODY = _f.read()
ETAG = '"' + hashlib.md5(BODY).hexdigest() + '"'
HEADERS = [("Content-Type", "application/rss+xml; charset=utf-8"), ("Content-Length", str(len(BODY))),
           ("ETag", ETAG)]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Serve BODY, or 304 when the client already has it."""
    if environ.get("HTTP_IF_NONE_MATCH") == ETAG:
        start_response("304 Not Modified", [("ETag", ETAG)])
        return []
    start_response("200 OK", HEADERS)
    return [BODY]
