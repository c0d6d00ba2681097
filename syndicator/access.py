"""Who may read what over HTTP: the operations endpoints (/status, /metrics, /healthz's reason) answer the
operator's networks only (`ops_networks`), and the public documents (feeds, archives, OPML, the XSL) any web
page's scripts (CORS). The documents carry their CORS headers themselves (documents.CORS_HEADERS)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .config import ip_networks
from .documents import CORS_HEADERS

# A script polling a feed sends the validators, which are not CORS-safelisted: the browser asks first with
# an OPTIONS preflight. Browsers cap Max-Age (Chromium at 2 hours); a day lets each use its own cap.
PREFLIGHT_HEADERS = (*CORS_HEADERS,
                     ("Access-Control-Allow-Methods", "GET, HEAD"),
                     ("Access-Control-Allow-Headers", "If-None-Match, If-Modified-Since, Cache-Control"),
                     ("Access-Control-Max-Age", "86400"))
_CORS_FILES = frozenset({"/topics.opml", "/static/feed.xsl"})


def is_cors_path(path: str) -> bool:
    """Whether scripts of any origin may read what `path` answers: feeds and archive pages (their 404s too,
    so a script can tell a missing feed from a network error, and a renamed topic's redirect, which a
    browser follows only when it allows CORS), the OPML and the XSL."""
    return path.startswith("/feeds/") or path in _CORS_FILES


@lru_cache(maxsize=8)
def _networks(setting: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return ip_networks(setting)


def is_operator(ops_networks: str, address: str | None) -> bool:
    """Whether a client at `address` (REMOTE_ADDR, which trusted proxies' X-Forwarded-For has already
    replaced) lies in one of `ops_networks`."""
    if not address:
        return False  # a Unix socket's peer, or a server that does not say: refused rather than guessed
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # an IPv4 client of a dual-stack socket
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(ops_networks))
