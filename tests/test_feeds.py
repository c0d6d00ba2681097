"""What a feed reader sees in our RSS and Atom, and the feedgen 1.0.0 traps we work around."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from helpers import SEED, parse

from syndicator import feeds
from syndicator.documents import Site, feed_document
from syndicator.model import Image, Item, Provider, Related
from syndicator.reader import read_item
from syndicator.scan import Scanner
from syndicator.snapshot import build_snapshot

UTC = dt.timezone.utc


def make_item(n: int, **kw) -> Item:
    base = dict(
        id=f"urn:uuid:00000000-0000-0000-0000-{n:012d}", path=f"news/{n}.md", title=f"Story {n}",
        url=f"https://news.example.org/{n}", published=dt.datetime(2024, 1, n, tzinfo=UTC),
        updated=dt.datetime(2024, 1, n, tzinfo=UTC), excerpt=f"Excerpt {n} & <more>",
        provider=Provider("CNET", "cnet.com"), topics=("Azure",),
        images=(Image(f"https://img.example.org/{n}.png", 640, 480, "Picture"),
                Image(f"https://img.example.org/{n}-b.webp")),
        related=(Related(f"Related {n}", f"https://other.example.net/{n}"),),
    )
    base.update(kw)
    return Item(**base)


def page(items, **kw) -> feeds.FeedPage:
    base = dict(key="azure", title="Azure", description="Azure news", items=tuple(items),
                updated=max(i.updated for i in items),
                self_url={f: f"https://feeds.example.com/feeds/azure.{f}" for f in feeds.FORMATS},
                html_url="https://feeds.example.com/topics/azure/")
    base.update(kw)
    return feeds.FeedPage(**base)


def shown(detail) -> str:
    """The text a reader displays: HTML content is unescaped, plain text is taken as it is."""
    return html.unescape(detail.value) if detail.type == "text/html" else detail.value


@pytest.fixture(params=["rss", "atom"])
def fmt(request):
    return request.param


def test_reader_sees_titles_links_dates_ids_categories(fmt):
    items = [make_item(3), make_item(2), make_item(1)]
    parsed = parse(feeds.render(page(items), fmt))
    assert [e.title for e in parsed.entries] == ["Story 3", "Story 2", "Story 1"]
    assert [e.link for e in parsed.entries] == [i.url for i in items]
    assert [e.id for e in parsed.entries] == [i.id for i in items]
    assert parsed.entries[0].published_parsed[:3] == (2024, 1, 3)
    assert [t.term for t in parsed.entries[0].tags] == ["Azure"]
    assert shown(parsed.entries[0].summary_detail) == "Excerpt 3 & <more>"
    assert parsed.entries[0].author == "CNET"
    assert parsed.feed.title == "Azure"


def test_rss_enclosure_and_media_rss():
    parsed = parse(feeds.render_rss(page([make_item(1)])))
    entry = parsed.entries[0]
    assert [(e.href, e.type, e.length) for e in entry.enclosures] == [
        ("https://img.example.org/1.png", "image/png", "0")]
    assert [(m["url"], m.get("width"), m.get("height")) for m in entry.media_content] == [
        ("https://img.example.org/1.png", "640", "480"), ("https://img.example.org/1-b.webp", None, None)]
    assert entry.media_thumbnail[0]["url"] == "https://img.example.org/1.png"
    related = [link for link in entry.links if link.rel == "related"]
    assert [(r.href, r.title) for r in related] == [("https://other.example.net/1", "Related 1")]
    assert "<h3>Related</h3>" in entry.content[0].value


def test_atom_enclosures_keep_type_and_related_keep_title():
    """python-feedgen issue 135: Atom entry links lose rel/type/title; readers then open the image."""
    parsed = parse(feeds.render_atom(page([make_item(1)])))
    entry = parsed.entries[0]
    links = [(link.rel, link.href, link.get("type"), link.get("title")) for link in entry.links]
    assert links == [
        ("alternate", "https://news.example.org/1", "text/html", None),
        ("enclosure", "https://img.example.org/1.png", "image/png", "Picture"),
        ("enclosure", "https://img.example.org/1-b.webp", "image/webp", None),
        ("related", "https://other.example.net/1", "text/html", "Related 1"),
    ]
    assert entry.link == "https://news.example.org/1"


def test_enclosure_length_is_never_none_text():
    body = feeds.render_rss(page([make_item(1)]))
    assert b'length="None"' not in body and b'length="0"' in body


def test_dates_come_from_items_not_now(fmt):
    items = [make_item(2), make_item(1)]
    first = feeds.render(page(items), fmt)
    parsed = parse(first)
    assert parsed.feed.updated_parsed[:3] == (2024, 1, 2)
    assert feeds.render(page(items), fmt) == first  # rendering again later gives the same bytes


def test_rss_channel_link_is_the_html_page_not_the_last_link_added():
    parsed = parse(feeds.render_rss(page([make_item(1)], links=(feeds.Link("hub", "https://hub.example/"),))))
    assert parsed.feed.link == "https://feeds.example.com/topics/azure/"
    rels = {(link.rel, link.href) for link in parsed.feed.links}
    assert ("self", "https://feeds.example.com/feeds/azure.rss") in rels
    assert ("hub", "https://hub.example/") in rels


def test_entries_keep_newest_first_order_feedgen_would_reverse(fmt):
    items = [make_item(n) for n in (9, 5, 1)]
    assert [e.title for e in parse(feeds.render(page(items), fmt)).entries] == ["Story 9", "Story 5", "Story 1"]


def test_text_is_escaped_and_forbidden_characters_never_reach_lxml(fmt):
    raw = SEED.read_text(encoding="utf-8").replace(
        'title: "Microsoft builds massive supercomputer for smarter AI"',
        'title: "<script>alert(1)</script> AT&T \\x01\\x1b ]]> end"')
    it = read_item(raw.encode(), "news/x.md")
    body = feeds.render(page([it]), fmt)
    parsed = parse(body)
    assert parsed.entries[0].title == "alert(1) AT&T ]]> end"  # the tags stripped, the text kept
    assert b"<script>" not in body


def test_feed_from_seed_and_corpus_parses_for_every_topic(corpus, fmt):
    snapshot = build_snapshot(Scanner(corpus).scan())
    site = Site("http://127.0.0.1:8080")
    for slug in ("all", *snapshot.topics):
        doc = feed_document(snapshot, site, slug, fmt)
        parsed = parse(doc.body)
        expected = snapshot.all_items if slug == "all" else snapshot.topics[slug].items
        assert [e.id for e in parsed.entries] == [i.id for i in expected[:50]]


def test_feed_limit_and_json_feed_shape():
    items = [make_item(n) for n in range(20, 0, -1)]
    import json

    data = json.loads(feeds.render_json(page(items)))
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    first = data["items"][0]
    assert first["image"] == "https://img.example.org/20.png"
    assert first["attachments"][0] == {"url": "https://img.example.org/20.png", "mime_type": "image/png",
                                       "title": "Picture"}
    assert first["tags"] == ["Azure"] and first["authors"][0]["name"] == "CNET"
    assert first["_syndicator"]["related"][0]["title"] == "Related 20"
