"""Rendered responses of one snapshot: bytes, gzip, ETag and Last-Modified per feed document.

Documents are rendered once per (snapshot, public base URL, document) and memoised in the snapshot;
a new snapshot takes over the documents of every topic whose items did not change, so a rescan
re-renders only the feeds it touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from functools import cached_property
from typing import NamedTuple

from isal import igzip

from . import feeds, fragments
from .config import Settings
from .entry import DEFAULT_RELATED
from .model import Item
from .snapshot import Snapshot, Topic

ARCHIVE_MAX_AGE = 30 * 86400  # an archive page older than the newest never changes
MAX_MEMO_BASES = 4  # distinct public base URLs memoised per snapshot; bounds memory under Host games
GZIP_LEVEL = 2  # isal's default: levels 0-3, 3 costs 2.5x the time for 5 % fewer bytes
PARALLEL_RENDER_THRESHOLD = 100  # topics; below this, starting processes costs more than it saves
# Sent with every 200 (a 304 leaves them out, see responses.respond): documents format them once.
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
# Feeds are public and carry no credentials, so any web page may read them (the JSON Feed spec asks for
# it; browser-based readers cannot fetch a feed otherwise). The validators are exposed to scripts so that
# they can poll with If-None-Match; a 304 carries these too, as browsers check CORS on it as well.
CORS_HEADERS = (("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Expose-Headers", "ETag, Last-Modified, Link"))


def http_date(value: dt.datetime) -> str:
    """An HTTP date (RFC 9110 5.6.7) of `value`, to the second."""
    return format_datetime(value.astimezone(dt.timezone.utc).replace(microsecond=0), usegmt=True)


@dataclass(frozen=True)
class Site:
    """What a document depends on besides the content: the public base URL and a few settings."""

    base_url: str  # public root without trailing slash, e.g. https://example.org/prefix
    title: str = "syndicator"
    hub_url: str = ""
    feed_limit: int = 50
    interval: int = 60
    logo: str = ""
    icon: str = ""
    related_limit: int = DEFAULT_RELATED

    @classmethod
    def of(cls, settings: Settings, base_url: str | None = None) -> Site:
        """The site that `settings` describe, at `base_url` (default: the configured base_url)."""
        return cls(settings.base_url if base_url is None else base_url, settings.title, settings.hub_url,
                   settings.feed_limit, settings.interval, settings.logo_url, settings.icon_url,
                   settings.related_limit)

    def feed_url(self, slug: str, fmt: str, page: int | None = None, kind: str | None = None) -> str:
        """/feeds/<slug>.<fmt>, its archive pages, and the same for one kind of item (/feeds/<slug>/video.rss):
        no query string, so a static export has them all."""
        base = f"{self.base_url}/feeds/{slug}" + (f"/{kind}" if kind else "")
        return f"{base}.{fmt}" if page is None else f"{base}/archive/{page}.{fmt}"

    def html_url(self, slug: str) -> str:
        return f"{self.base_url}/" if slug == "all" else f"{self.base_url}/topics/{slug}/"


class FeedKey(NamedTuple):
    """A rendered feed in a snapshot's memo."""

    site: Site  #: the public base URL and settings it was rendered for
    slug: str  #: topic slug, or "all"
    fmt: str  #: "rss", "atom" or "json"
    page: int | None = None  #: archive page number; None for the subscription feed
    limit: int | None = None  #: `?limit=N` when below feed_limit; None for the full feed
    kind: str | None = None  #: only items of this kind (video, download, ...); None for every item


class PageKey(NamedTuple):
    """A rendered HTML page or the OPML in a snapshot's memo."""

    site: Site  #: the public base URL and settings it was rendered for
    name: str  #: "opml", or the template of an HTML page
    slug: str | None = None  #: the topic of a topic page


class PaginationKey(NamedTuple):
    """A topic's RFC 5005 split into pages in a snapshot's memo (shared by every format)."""

    slug: str  #: topic slug, or "all"
    limit: int  #: items per page
    kind: str | None = None  #: of the items of this kind only


class KindsKey(NamedTuple):
    """A topic's items of one kind, or (kind None) the kinds present, in a snapshot's memo."""

    slug: str
    kind: str | None


KIND_LABELS = {"article": "articles", "video": "videos", "download": "downloads"}


def kind_label(kind: str) -> str:
    """How a feed of one kind is named: "videos"; another kind by its name ("podcast items")."""
    return KIND_LABELS.get(kind, f"{kind} items")


@dataclass(frozen=True)
class Document:
    body: bytes
    gzip: bytes
    etag: str  # strong, quoted
    last_modified: dt.datetime
    content_type: str
    max_age: int
    links: tuple[feeds.Link, ...] = ()  # for HTTP Link headers (self, hub)
    # Browsers show application/rss+xml as plain text but apply our XSL to application/xml, so a
    # navigation from a browser gets the same bytes under this type (see web.send_document).
    browser_type: str = ""
    cors: bool = False  # readable by scripts of any origin (CORS_HEADERS): feeds, OPML, the XSL
    digest: str = ""  # sha256 of the body, hex (the ETag is its first half): an export's manifest needs it

    def variant_etag(self, *, gzipped: bool, browser: bool) -> str:
        """Each representation (content coding, content type) has its own strong ETag."""
        suffix = ("-b" if browser else "") + ("-gz" if gzipped else "")
        return self.etag[:-1] + suffix + '"'

    @cached_property
    def all_etags(self) -> frozenset[str]:
        """Every representation's tag, unquoted, for If-None-Match."""
        return frozenset(self.variant_etag(gzipped=g, browser=b).strip('"') for g in (False, True)
                         for b in (False, True))

    @cached_property
    def revalidation_headers(self) -> tuple[tuple[str, str], ...]:
        """What a 304 carries besides the ETag: the caching fields a 200 would have (RFC 9110 15.4.5)."""
        return (("Cache-Control", f"public, max-age={self.max_age}, stale-while-revalidate={self.max_age}"),
                ("Vary", "Accept, Accept-Encoding" if self.browser_type else "Accept-Encoding"),
                *(CORS_HEADERS if self.cors else ()))

    @cached_property
    def common_headers(self) -> tuple[tuple[str, str], ...]:
        """Headers every 200 of this document carries, formatted once rather than per request."""
        headers = [("Last-Modified", http_date(self.last_modified)), *self.revalidation_headers]
        if self.links:
            headers.append(("Link", ", ".join(f'<{link.href}>; rel="{link.rel}"' for link in self.links)))
        return (*headers, *SECURITY_HEADERS)


def compress(body: bytes) -> bytes:
    """The gzip of a document: ISA-L's igzip at its default level, about 12 times zlib's level 6 on our
    feeds for a fifth more bytes (docs/design.md); the same format, so any gzip reader takes it."""
    return igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def make_document(body: bytes, content_type: str, last_modified: dt.datetime, max_age: int,
                  links: tuple[feeds.Link, ...] = (), browser_type: str = "", cors: bool = False) -> Document:
    """Wrap bytes with their validators and a gzip copy, compressed once here and never per request;
    `cors`: scripts of any origin may read it."""
    digest = hashlib.sha256(body).hexdigest()
    return Document(body=body, gzip=compress(body), etag=f'"{digest[:32]}"', digest=digest,
                    last_modified=last_modified, content_type=content_type, max_age=max_age, links=links,
                    browser_type=browser_type, cors=cors)


def items_of(snapshot: Snapshot, slug: str, kind: str | None = None) -> tuple[Item, ...] | None:
    """A topic's (or "all"'s) served items, newest first, all or of one kind; None when there are none."""
    if slug == "all":
        items = snapshot.all_items
    else:
        topic = snapshot.topics.get(slug)
        if topic is None:
            return None
        items = topic.items
    if kind is None:
        return items
    key = KindsKey(slug, kind)
    found = snapshot.memo.get(key)
    if found is None:
        found = snapshot.memo[key] = tuple(item for item in items if item.kind == kind)
    return found or None  # no feed of a kind the topic does not have


def kind_counts(snapshot: Snapshot, slug: str) -> list[tuple[str, int]]:
    """(kind, how many items of it) for each kind a topic (or "all") holds, most frequent first."""
    return [(kind, len(items_of(snapshot, slug, kind) or ())) for kind in kinds(snapshot, slug)]


def kinds(snapshot: Snapshot, slug: str) -> tuple[str, ...]:
    """The kinds of item a topic (or "all") holds, most frequent first: each has its own feeds."""
    key = KindsKey(slug, None)
    found = snapshot.memo.get(key)
    if found is None:
        items = items_of(snapshot, slug) or ()
        counts: dict[str, int] = {}
        for item in items:
            counts[item.kind] = counts.get(item.kind, 0) + 1
        found = snapshot.memo[key] = tuple(sorted(counts, key=lambda k: (-counts[k], k)))
    return found


def feed_page(snapshot: Snapshot, site: Site, slug: str, fmt: str, page: int | None = None,
              limit: int | None = None, kind: str | None = None) -> tuple[feeds.FeedPage, int] | None:
    """The FeedPage for a topic's subscription feed (page None) or archive page, of every item or of one
    kind, and its max-age. None when the topic, kind or page does not exist.
    """
    items = items_of(snapshot, slug, kind)
    if items is None:
        return None
    current, archives = _pages(snapshot, slug, items, site.feed_limit, kind)
    topic: Topic | None = snapshot.topics.get(slug)
    name = topic.name if topic else "All items"
    if kind is not None:
        name = f"{name}: {kind_label(kind)}"
    links: list[feeds.Link] = []
    if site.hub_url:
        links.append(feeds.Link("hub", site.hub_url))
    max_age = site.interval
    if page is None:
        docs = current[:limit] if limit else current
        title = f"{site.title}: {name}"
        if archives:
            links.append(feeds.Link("prev-archive", site.feed_url(slug, fmt, len(archives), kind)))
    else:
        if not 1 <= page <= len(archives):
            return None
        docs = archives[page - 1]
        title = f"{site.title}: {name} (archive {page})"
        links.append(feeds.Link("current", site.feed_url(slug, fmt, None, kind)))
        if page > 1:
            links.append(feeds.Link("prev-archive", site.feed_url(slug, fmt, page - 1, kind)))
        if page < len(archives):
            links.append(feeds.Link("next-archive", site.feed_url(slug, fmt, page + 1, kind)))
        if page < len(archives):  # the newest page may still grow, and gains a next-archive link when full
            max_age = ARCHIVE_MAX_AGE
    updated = max((i.updated for i in docs), default=snapshot.newest)
    description = (topic.description if topic and topic.description else
                   f"Newest {name} stories" if topic else "Newest stories of every topic")
    result = feeds.FeedPage(
        key=slug if kind is None else f"{slug}/{kind}", title=title, description=description, items=docs,
        updated=updated, self_url={f: site.feed_url(slug, f, page, kind) for f in feeds.FORMATS},
        html_url=site.html_url(slug), links=tuple(links), archive=page is not None,
        image=(topic.definition.image if topic and topic.definition and topic.definition.image else site.logo),
        icon=site.icon, related_limit=site.related_limit, ttl_minutes=max(1, math.ceil(site.interval / 60)),
        stylesheet=f"{site.base_url}/static/feed.xsl",
    )
    return result, max_age


def memoized(snapshot: Snapshot, key: FeedKey | PageKey, make: Callable[[], Document]) -> Document:
    """`make()` once per snapshot and key. Only a few distinct public base URLs are kept, so a client
    sending many Host headers cannot grow memory; beyond them documents are rendered per request."""
    doc = snapshot.memo.get(key)
    if doc is None:
        doc = make()
        sites = snapshot.memo_sites
        if key.site in sites or len(sites) < MAX_MEMO_BASES:
            sites.add(key.site)
            snapshot.memo[key] = doc
    return doc


def _pages(snapshot: Snapshot, slug: str, items: tuple[Item, ...], limit: int, kind: str | None = None):
    """The RFC 5005 split of a topic, computed once per snapshot (every archive page needs it)."""
    key = PaginationKey(slug, limit, kind)
    found = snapshot.memo.get(key)
    if found is None:
        found = snapshot.memo[key] = feeds.paginate(items, limit)
    return found


def archive_count(snapshot: Snapshot, site: Site, slug: str, kind: str | None = None) -> int:
    """How many RFC 5005 archive pages a topic's feed (of every item, or of one kind) has."""
    items = items_of(snapshot, slug, kind)
    return len(_pages(snapshot, slug, items, site.feed_limit, kind)[1]) if items else 0


def same_topic(new: Snapshot, old: Snapshot, slug: str) -> bool:
    """Whether every feed document of a topic (or "all") is the same in both snapshots."""
    if slug == "all":
        return new.all_items == old.all_items  # the same objects mostly: compared by identity first
    topic = new.topics.get(slug)
    # An empty topic's feed dates come from the site's newest item, so that must hold too.
    return topic is not None and bool(topic.items or new.newest == old.newest) and topic is old.topics.get(slug)


def same_page(new: Snapshot, old: Snapshot, key: FeedKey) -> bool:
    """Whether a feed document has the same page (items, links, dates) in both snapshots, so the same
    bytes: a full archive page of a topic that changed elsewhere, say."""
    found = feed_page(new, *key)
    return found is not None and found == feed_page(old, *key)


def feed_document(snapshot: Snapshot, site: Site, slug: str, fmt: str, page: int | None = None,
                  limit: int | None = None, kind: str | None = None, *, keep: bool = True) -> Document | None:
    """The rendered feed document, memoised in the snapshot (unless `keep` is false: an export writes
    each document once). None when it does not exist."""
    key = FeedKey(site, slug, fmt, page, limit, kind)
    if key in snapshot.memo:
        return snapshot.memo[key]
    found = feed_page(snapshot, site, slug, fmt, page, limit, kind)
    if found is None:
        return None
    fp, max_age = found
    links = tuple(link for link in fp.links if link.rel == "hub") + (feeds.Link("self", fp.self_url[fmt]),)
    browser_type = "application/xml; charset=utf-8" if fmt in ("rss", "atom") else ""
    def make() -> Document:
        return make_document(render_page(snapshot, fp, fmt), feeds.CONTENT_TYPES[fmt], fp.updated, max_age, links,
                             browser_type, cors=True)

    return memoized(snapshot, key, make) if keep else make()


def render_page(snapshot: Snapshot, fp: feeds.FeedPage, fmt: str) -> bytes:
    """A feed page's bytes: assembled from the snapshot's kept entry fragments during a bulk render,
    rendered whole otherwise (the same bytes either way)."""
    entries = fragments.entries_of(snapshot, fp.items, fmt, fp.related_limit)
    return feeds.render(fp, fmt) if entries is None else feeds.assemble(fp, fmt, entries)


def opml_document(snapshot: Snapshot, site: Site) -> Document:
    """OPML 2.0 of every topic's RSS feed, for importing all topics into a reader at once."""
    def outline(topic: Topic) -> dict:
        return {"text": topic.name, "xmlUrl": site.feed_url(topic.slug, "rss"), "htmlUrl": site.html_url(topic.slug),
                **({"description": topic.description} if topic.description else {}),
                "children": [outline(snapshot.topics[child]) for child in topic.children]}

    def make() -> Document:
        # Subtopics nest in their parent's outline, as they do on the index page.
        outlines = [outline(topic) for topic in snapshot.topics.values() if not topic.parent]
        body = feeds.render_opml(f"{site.title}: topics", snapshot.newest, outlines)
        return make_document(body, "text/x-opml; charset=utf-8", snapshot.newest, site.interval, cors=True)

    return memoized(snapshot, PageKey(site, "opml"), make)


def carry_over(new: Snapshot, old: Snapshot | None) -> int:
    """Reuse the old snapshot's documents whose inputs are unchanged; returns how many were reused."""
    if old is None:
        return 0
    reused = 0
    same: dict[str, bool] = {}
    # A copy: request threads keep adding documents to the old snapshot's memo while this runs.
    for key, doc in list(old.memo.items()):
        if type(key) is not FeedKey:
            continue
        new.memo_sites.add(key.site)
        unchanged = same.get(key.slug)
        if unchanged is None:
            unchanged = same[key.slug] = same_topic(new, old, key.slug)
        if unchanged:
            new.memo[key] = doc
            reused += 1
    return reused


def prerender(snapshot: Snapshot, site: Site, workers: int = 1) -> int:
    """Render every subscription feed in every format ahead of requests; returns how many were new.

    Each entry is rendered once per format (in `workers` processes when there are many feeds: feedgen
    holds the GIL), then every feed is assembled from the entries in this process.
    """
    todo = [slug for slug in ("all", *snapshot.topics)
            if any(FeedKey(site, slug, fmt) not in snapshot.memo for fmt in feeds.FORMATS)]
    needed = [item for slug in todo for item in (items_of(snapshot, slug) or ())[:site.feed_limit]]
    parallel = workers if len(todo) >= PARALLEL_RENDER_THRESHOLD else 1
    snapshot.memo_sites.add(site)
    rendered = 0
    for fmt in feeds.FORMATS:  # one format's fragments in memory at a time
        fragments.keep(snapshot, fmt, site.related_limit, needed, parallel)
        for slug in todo:
            key = FeedKey(site, slug, fmt)
            if key not in snapshot.memo:
                snapshot.memo[key] = feed_document(snapshot, site, slug, fmt, keep=False)
                rendered += 1
        fragments.drop(snapshot)
    return rendered
