"""What a feed document is, whatever its format: `FeedPage` (a topic's subscription feed or one of its
archive pages), its links, its stable id, and the RFC 5005 split of a topic into pages."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .entry import DEFAULT_RELATED
from .model import Item

FORMATS = ("rss", "atom", "json")
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


@dataclass(frozen=True)
class Link:
    rel: str
    href: str
    type: str = ""
    title: str = ""


@dataclass(frozen=True)
class FeedPage:
    """One feed document to render: a topic's subscription feed or one of its archive pages."""

    key: str  # 'all' or a topic slug; part of the feed's stable id
    title: str
    description: str
    items: tuple[Item, ...]  # in document order (newest first)
    updated: dt.datetime
    self_url: dict[str, str]  # format -> URL of this very document
    html_url: str
    links: tuple[Link, ...] = ()  # hub, current, prev-archive, next-archive
    archive: bool = False
    image: str = ""  # the feed's own image (a topic's, or the site's logo), never an item's
    icon: str = ""  # the site's icon: Atom icon, JSON Feed favicon
    related_limit: int = DEFAULT_RELATED  # related links shown per entry
    ttl_minutes: int = 1
    generator: str = "syndicator"
    stylesheet: str = ""  # XSL that browsers apply to show a readable page; readers ignore it


def feed_id(key: str) -> str:
    """A feed id that survives a change of host or scheme."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'syndicator:feed:' + key)}"



def paginate(items: Sequence[Item], limit: int) -> tuple[tuple[Item, ...], list[tuple[Item, ...]]]:
    """Split newest-first items into the subscription document (newest `limit`) and RFC 5005 archives.

    Archives hold everything older, oldest first, `limit` per page; page 1 is the oldest. A page
    never changes once full, except when an item is back-dated into it.
    """
    current = tuple(items[:limit])
    older = list(reversed(items[limit:]))  # oldest first
    pages = [tuple(reversed(older[i:i + limit])) for i in range(0, len(older), limit)]
    return current, pages
