"""Pure rendering of feed documents: RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1.

feedgen 1.0.0 is pinned and used for what it does well; a small extension (`_FeedExt`, `_EntryExt`)
writes what it gets wrong or cannot express:
- Atom entry links lose rel/type/length/title (python-feedgen issue 135): the extension rewrites them.
- RSS gets one enclosure (the first image, length 0 when unknown), Media RSS for every image,
  `atom:link rel="related"` per related article, hub/archive links and the RFC 5005 archive marker.
Other traps are avoided at the call site: entries are appended (add_entry prepends by default), every
date is set from the items (feedgen defaults to now), and the RSS channel gets exactly one alternate link.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from .model import Item

ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_NS = "http://search.yahoo.com/mrss/"
HISTORY_NS = "http://purl.org/syndication/history/1.0"
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
    image: str = ""
    ttl_minutes: int = 1
    generator: str = "syndicator"
    stylesheet: str = ""  # XSL that browsers apply to show a readable page; readers ignore it


def feed_id(key: str) -> str:
    """A feed id that survives a change of host or scheme."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'syndicator:feed:' + key)}"


def _item_html(item: Item) -> str:
    """The entry's HTML: excerpt, images, sanitised body and a Related list. All text escaped."""
    parts = []
    if item.excerpt:
        parts.append(f"<p>{html.escape(item.excerpt)}</p>")
    for image in item.images:
        size = ""
        if image.width and image.height:
            size = f' width="{image.width}" height="{image.height}"'
        alt = html.escape(image.title or item.title)
        parts.append(f'<p><img src="{html.escape(image.url)}" alt="{alt}"{size}></p>')
    if item.body_html:
        parts.append(item.body_html)
    if item.related:
        rows = []
        for rel in item.related:
            via = f" ({html.escape(rel.provider)})" if rel.provider else ""
            rows.append(f'<li><a href="{html.escape(rel.url)}">{html.escape(rel.title)}</a>{via}</li>')
        parts.append("<h3>Related</h3><ul>" + "".join(rows) + "</ul>")
    parts.append(f'<p><a href="{html.escape(item.url)}">Read the full story</a></p>')
    return "\n".join(parts)


class _FeedExt(BaseExtension):
    """Feed-level additions: links feedgen cannot write (hub, archives) and the archive marker."""

    def __init__(self) -> None:
        self.page: FeedPage | None = None

    def extend_ns(self):
        return {"media": MEDIA_NS, "fh": HISTORY_NS}

    def extend_atom(self, feed):
        assert self.page is not None, "render() sets the page first"
        for link in self.page.links:
            # feedgen writes Atom elements unqualified under a plain xmlns attribute; so do we.
            _sub(feed, "link", rel=link.rel, href=link.href, type=link.type)
        if self.page.archive:
            etree.SubElement(feed, f"{{{HISTORY_NS}}}archive")
        return feed

    def extend_rss(self, feed):
        assert self.page is not None, "render() sets the page first"
        channel = feed[0]
        for link in self.page.links:
            _sub(channel, f"{{{ATOM_NS}}}link", rel=link.rel, href=link.href, type=link.type)
        if self.page.archive:
            etree.SubElement(channel, f"{{{HISTORY_NS}}}archive")
        return feed


class _EntryExt(BaseEntryExtension):
    """Entry-level links and media, written from our Item rather than feedgen's link list."""

    def __init__(self) -> None:
        self.item: Item | None = None

    def extend_atom(self, entry):
        item = self.item
        assert item is not None, "render() sets the item first"
        for old in entry.findall("link"):
            entry.remove(old)
        _sub(entry, "link", rel="alternate", type="text/html", href=item.url)
        for image in item.images:
            _sub(entry, "link", rel="enclosure", href=image.url, type=image.mime_type, title=image.title)
        for rel in item.related:
            _sub(entry, "link", rel="related", type="text/html", href=rel.url, title=rel.title)
        return entry

    def extend_rss(self, entry):
        item = self.item
        assert item is not None, "render() sets the item first"
        if item.images:
            first = item.images[0]
            # RSS allows one enclosure; length is required and 0 is the agreed "unknown".
            _sub(entry, "enclosure", url=first.url, length="0", type=first.mime_type)
        for image in item.images:
            content = _sub(entry, f"{{{MEDIA_NS}}}content", url=image.url, type=image.mime_type,
                           medium="image", width=_num(image.width), height=_num(image.height))
            if image.title:
                _sub(content, f"{{{MEDIA_NS}}}title").text = image.title
        if item.images:
            first = item.images[0]
            _sub(entry, f"{{{MEDIA_NS}}}thumbnail", url=first.url, width=_num(first.width),
                 height=_num(first.height))
        for rel in item.related:
            _sub(entry, f"{{{ATOM_NS}}}link", rel="related", type="text/html", href=rel.url, title=rel.title)
        return entry


def _num(value: int | None) -> str:
    return str(value) if value else ""


def _sub(parent, tag: str, **attrs: str):
    """SubElement without empty attributes."""
    return etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v})


def _generator(page: FeedPage, fmt: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.register_extension("syn", _FeedExt, _EntryExt, atom=True, rss=True)
    fg.syn.page = page
    fg.id(feed_id(page.key))
    fg.title(page.title)
    fg.subtitle(page.description or page.title)
    # feedgen makes the RSS channel <link> whatever link was added last, so self goes first.
    fg.link(href=page.self_url[fmt], rel="self", type=CONTENT_TYPES[fmt].split(";")[0])
    fg.link(href=page.html_url, rel="alternate", type="text/html")
    fg.language("en")
    fg.generator(page.generator, uri="https://github.com/syndicator")
    fg.updated(page.updated)
    fg.lastBuildDate(page.updated)
    fg.ttl(page.ttl_minutes)
    if page.image:
        fg.logo(page.image)
    for item in page.items:
        fe = fg.add_entry(order="append")
        fe.syn.item = item
        fe.id(item.id)
        fe.guid(item.id, permalink=False)
        fe.title(item.title)
        fe.link(href=item.url, rel="alternate")
        fe.published(item.published)
        fe.updated(item.updated)
        fe.summary(item.excerpt or item.title)  # Atom: type="text", shown as written
        # RSS readers treat <description> as HTML, so plain text is escaped once more for it. feedgen's
        # description() also overwrites the Atom content, which content() then sets properly.
        fe.description(html.escape(item.excerpt or item.title, quote=False))
        fe.content(_item_html(item), type="html")
        if item.provider:
            fe.author(name=item.provider.name, uri=f"https://{item.provider.domain}/" if item.provider.domain
                      else None)
            fe.dc.dc_creator(item.provider.name)
        for name in item.topics:
            fe.category(term=name, label=name)
    return fg


def _with_stylesheet(body: bytes, page: FeedPage) -> bytes:
    if not page.stylesheet:
        return body
    declaration, rest = body.split(b"\n", 1)
    pi = f'<?xml-stylesheet type="text/xsl" href="{html.escape(page.stylesheet)}"?>'.encode()
    return declaration + b"\n" + pi + b"\n" + rest


def render_rss(page: FeedPage) -> bytes:
    """RSS 2.0 bytes for one page; the same page always gives the same bytes."""
    body = _generator(page, "rss").rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _with_stylesheet(body, page)


def render_atom(page: FeedPage) -> bytes:
    """Atom 1.0 bytes for one page; the same page always gives the same bytes."""
    body = _generator(page, "atom").atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return _with_stylesheet(body, page)


def render_opml(title: str, updated: dt.datetime, outlines: Sequence[dict[str, str]]) -> bytes:
    """OPML 2.0 listing feeds; each outline gives text, xmlUrl, htmlUrl and optionally description."""
    from email.utils import format_datetime

    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateModified").text = format_datetime(updated.astimezone(dt.timezone.utc), usegmt=True)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    for outline in outlines:
        etree.SubElement(body, "outline", {"type": "rss", "title": outline["text"], **outline})
    return etree.tostring(root, pretty_print=True, encoding="UTF-8", xml_declaration=True)


def render_json(page: FeedPage) -> bytes:
    """JSON Feed 1.1 bytes with the same information as the XML formats."""
    feed: dict = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": page.title,
        "home_page_url": page.html_url,
        "feed_url": page.self_url["json"],
        "description": page.description or page.title,
        "language": "en",
    }
    if page.image:
        feed["icon"] = page.image
    hubs = [{"type": "WebSub", "url": link.href} for link in page.links if link.rel == "hub"]
    if hubs:
        feed["hubs"] = hubs
    archive_links = {link.rel: link.href for link in page.links if link.rel != "hub"}
    if archive_links or page.archive:
        feed["_rfc5005"] = {"archive": page.archive, **archive_links}
    feed["items"] = [_json_item(item) for item in page.items]
    # No indent: json only uses its C encoder for compact output, ~20x faster on big feeds.
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _json_item(item: Item) -> dict:
    entry: dict = {
        "id": item.id,
        "url": item.url,
        "title": item.title,
        "content_html": _item_html(item),
        "date_published": _rfc3339(item.published),
        "date_modified": _rfc3339(item.updated),
    }
    if item.excerpt:
        entry["summary"] = item.excerpt
    if item.images:
        entry["image"] = item.images[0].url
        entry["attachments"] = [
            {"url": image.url, "mime_type": image.mime_type, **({"title": image.title} if image.title else {})}
            for image in item.images
        ]
    if item.topics:
        entry["tags"] = list(item.topics)
    if item.provider:
        author = {"name": item.provider.name}
        if item.provider.domain:
            author["url"] = f"https://{item.provider.domain}/"
        entry["authors"] = [author]
    if item.related:
        entry["_syndicator"] = {"related": [
            {"title": rel.title, "url": rel.url,
             **({"date_published": _rfc3339(rel.published)} if rel.published else {}),
             **({"provider": rel.provider} if rel.provider else {})}
            for rel in item.related
        ]}
    return entry


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}


def render(page: FeedPage, fmt: str) -> bytes:
    """Bytes of `page` in format `fmt` ('rss', 'atom' or 'json')."""
    return RENDERERS[fmt](page)


def paginate(items: Sequence[Item], limit: int) -> tuple[tuple[Item, ...], list[tuple[Item, ...]]]:
    """Split newest-first items into the subscription document (newest `limit`) and RFC 5005 archives.

    Archives hold everything older, oldest first, `limit` per page; page 1 is the oldest. A page
    never changes once full, except when an item is back-dated into it.
    """
    current = tuple(items[:limit])
    older = list(reversed(items[limit:]))  # oldest first
    pages = [tuple(reversed(older[i:i + limit])) for i in range(0, len(older), limit)]
    return current, pages
