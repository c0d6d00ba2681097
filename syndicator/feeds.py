"""Pure rendering of feed documents: RSS 2.0 and Atom 1.0 (feedgen), JSON Feed 1.1 (jsonfeed.py), OPML.

feedgen 1.0.0 is pinned and used for what it does well; a small extension (`_FeedExt`, `_EntryExt`)
writes what it gets wrong or cannot express:
- Atom entry links lose rel/type/length/title (python-feedgen issue 135): the extension rewrites them.
- RSS gets one enclosure (a download's file, else an article's first image; length 0 when unknown),
  Media RSS for every image, a video's url-less `media:content` with its player (also inside Atom
  entries), `atom:link rel="related"` per related link shown, hub/archive links and the RFC 5005
  archive marker.
Other traps are avoided at the call site: entries are appended (add_entry prepends by default), every
date is set from the items (feedgen defaults to now), and the RSS channel gets exactly one alternate link.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import replace

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from . import entry as entry_parts
from .feedpage import CONTENT_TYPES, FORMATS, FeedPage, Link, feed_id, paginate
from .jsonfeed import json_entry, render_json
from .model import Item, mime_type_for

__all__ = ["CONTENT_TYPES", "FORMATS", "FeedPage", "Link", "assemble", "entry_fragments", "feed_id", "paginate",
           "render", "render_opml"]

ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_NS = "http://search.yahoo.com/mrss/"
HISTORY_NS = "http://purl.org/syndication/history/1.0"


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
        self.related_limit = entry_parts.DEFAULT_RELATED

    def extend_atom(self, entry):
        item = self.item
        assert item is not None, "render() sets the item first"
        for old in entry.findall("link"):
            entry.remove(old)
        _sub(entry, "link", rel="alternate", type="text/html", href=item.url)
        for download in item.downloads:  # no length: Atom may leave it out, and we do not know it
            _sub(entry, "link", rel="enclosure", href=download.url, type=download.mime_type,
                 title=entry_parts.download_text(download))
        if item.kind != "video":
            for image in item.images:
                _sub(entry, "link", rel="enclosure", href=image.url, type=image.mime_type, title=image.title)
        for rel in entry_parts.related(item, self.related_limit):
            _sub(entry, "link", rel="related", type="text/html", href=rel.url, title=rel.title)
        if item.kind == "video":
            _video_media(entry, item)  # Media RSS inside Atom, as YouTube's own feeds carry it
        return entry

    def extend_rss(self, entry):
        item = self.item
        assert item is not None, "render() sets the item first"
        # RSS allows one enclosure (a second draws DuplicateEnclosure): the file a download offers, else
        # the first image of an article; length is required and 0 is the agreed "unknown".
        if item.downloads:
            first_file = item.downloads[0]
            _sub(entry, "enclosure", url=first_file.url, length="0", type=first_file.mime_type)
        elif item.images and item.kind != "video":
            _sub(entry, "enclosure", url=item.images[0].url, length="0", type=item.images[0].mime_type)
        if item.kind == "video":
            _video_media(entry, item)
        else:
            for image in item.images:
                content = _sub(entry, f"{{{MEDIA_NS}}}content", url=image.url, type=image.mime_type,
                               medium="image", width=_num(image.width), height=_num(image.height))
                if image.title:
                    _sub(content, f"{{{MEDIA_NS}}}title").text = image.title
            if item.images:
                _thumbnail(entry, item.images[0])
        for rel in entry_parts.related(item, self.related_limit):
            _sub(entry, f"{{{ATOM_NS}}}link", rel="related", type="text/html", href=rel.url, title=rel.title)
        return entry


def _video_media(entry, item: Item) -> None:
    """A video's Media RSS: `media:content medium="video"` without a url (the watch page is no media file;
    readers would put it into a <video> element that cannot play it), holding the embeddable player, and
    the thumbnails. No media:group: the validator calls one holding a single media:content an error."""
    video = item.video
    content = _sub(entry, f"{{{MEDIA_NS}}}content", medium="video",
                   duration=str(video.duration) if video and video.duration else "")
    if video and video.player:
        _sub(content, f"{{{MEDIA_NS}}}player", url=video.player)
    _sub(content, f"{{{MEDIA_NS}}}title").text = item.title
    for image in item.images[:1]:
        _thumbnail(entry, image)


def _thumbnail(parent, image) -> None:
    _sub(parent, f"{{{MEDIA_NS}}}thumbnail", url=image.url, width=_num(image.width), height=_num(image.height))


def _num(value: int | None) -> str:
    return str(value) if value else ""


def _sub(parent, tag: str, **attrs: str):
    """SubElement without empty attributes."""
    return etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v})


def _generator(page: FeedPage, fmt: str) -> FeedGenerator:
    # Imported here: feedgen.ext.dc needs lxml.etree imported before it, which feedgen.feed does.
    from feedgen.ext.dc import DcEntryExtension, DcExtension

    fg = FeedGenerator()
    # register_extension, not load_extension("dc"): that one looks for a dc_entry module on disk every
    # time (a failing import, a third of a feed head's cost) before settling for these classes.
    fg.register_extension("dc", DcExtension, DcEntryExtension, atom=False, rss=True)
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
    # RSS's <image> must be a GIF, JPEG or PNG (the validator's ImageUrlFormat); Atom's logo any image.
    if page.image and (fmt != "rss" or mime_type_for(page.image) in ("image/gif", "image/jpeg", "image/png")):
        fg.logo(page.image)
    if page.icon:
        fg.icon(page.icon)
    for item in page.items:
        fe = fg.add_entry(order="append")
        fe.syn.item = item
        fe.syn.related_limit = page.related_limit
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
        fe.content(entry_parts.content_html(item, page.related_limit), type="html")
        # The people who wrote it are its authors, the provider a contributor beside them (feedparser
        # reports the last Atom author as the entry's, so the provider must not be a second author).
        provider = item.provider
        provider_uri = f"https://{provider.domain}/" if provider and provider.domain else None
        for person in item.authors:
            fe.author(name=person.name, uri=person.url or None)
        if provider and item.authors:
            fe.contributor(name=provider.name, uri=provider_uri)
        elif provider:
            fe.author(name=provider.name, uri=provider_uri)
        if item.authors or provider:
            fe.dc.dc_creator(entry_parts.byline(item))
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


def render_opml(title: str, updated: dt.datetime, outlines: Sequence[dict]) -> bytes:
    """OPML 2.0 listing feeds; each outline gives text, xmlUrl, htmlUrl, optionally description, and
    "children": the outlines nested in it (subtopics)."""
    from email.utils import format_datetime

    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateModified").text = format_datetime(updated.astimezone(dt.timezone.utc), usegmt=True)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")

    def add(parent, outlines: Sequence[dict]) -> None:
        for outline in outlines:
            attributes = {k: v for k, v in outline.items() if k != "children"}
            element = etree.SubElement(parent, "outline", {"type": "rss", "title": outline["text"], **attributes})
            add(element, outline.get("children", ()))

    add(body, outlines)
    return etree.tostring(root, pretty_print=True, encoding="UTF-8", xml_declaration=True)


def render(page: FeedPage, fmt: str) -> bytes:
    """Bytes of `page` in format `fmt` ('rss', 'atom' or 'json'), rendered whole: the reference that
    `assemble` matches byte for byte."""
    if fmt == "json":
        return render_json(page)
    return render_rss(page) if fmt == "rss" else render_atom(page)


# Pretty-printed, an entry is the same bytes wherever it stands: libxml2 indents by depth only, and
# every namespace is declared on the root. feedgen appends entries after every other child, so a
# document is head + entries + the close of its root. "<" is always escaped in text and attribute
# values, so these markers can only be the entries' own start tags.
_ENTRY_START = {"rss": b"\n    <item>", "atom": b"\n  <entry>"}
_CLOSE = {"rss": b"\n  </channel>\n</rss>\n", "atom": b"\n</feed>\n"}
_JSON_CLOSE = b"]}\n"


def entry_fragments(items: Sequence[Item], fmt: str, related_limit: int = entry_parts.DEFAULT_RELATED) -> list[bytes]:
    """Each item's entry as the bytes it has inside any `fmt` document: rendered by feedgen (JSON by
    jsonfeed.py) in one go, then cut apart."""
    if not items:
        return []
    if fmt == "json":
        return [json_entry(item, related_limit) for item in items]
    page = FeedPage(key="fragments", title="fragments", description="", items=tuple(items),
                    updated=items[0].updated, self_url={fmt: "https://fragments.invalid/"},
                    html_url="https://fragments.invalid/", related_limit=related_limit)
    body = render_rss(page) if fmt == "rss" else render_atom(page)
    start = body.index(_ENTRY_START[fmt])
    assert body.endswith(_CLOSE[fmt]), "feedgen closes the root right after the last entry"
    marker = _ENTRY_START[fmt]
    parts = body[start:-len(_CLOSE[fmt])].split(marker)[1:]
    assert len(parts) == len(items), "one start tag per entry"
    return [marker + part for part in parts]


def assemble(page: FeedPage, fmt: str, fragments: Sequence[bytes]) -> bytes:
    """The bytes `render(page, fmt)` gives, from the page's head and its items' `entry_fragments`."""
    head = render(replace(page, items=()), fmt)  # the same document without entries
    if fmt == "json":
        assert head.endswith(b"[" + _JSON_CLOSE), "items is the JSON Feed's last member"
        return head[:-len(_JSON_CLOSE)] + b",".join(fragments) + _JSON_CLOSE
    close = _CLOSE[fmt]
    assert head.endswith(close), "feedgen closes the root right after the last child"
    return b"".join((head[:-len(close)], *fragments, close))
