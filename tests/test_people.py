"""For people: OPML import into a real reader (newsboat), JSON Feed read by an independent library,
HTML pages escaped and accessible. Browser rendering is in test_browser.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import jsonfeed
import pytest
from helpers import parse, serve, write_item
from lxml import etree

from syndicator.scan import Scanner
from syndicator.snapshot import build_snapshot
from syndicator.web import app_state

NEWSBOAT = shutil.which("newsboat")


def test_opml_lists_every_topic_feed(client):
    response = client.get("/topics.opml")
    assert response.headers["Content-Type"] == "text/x-opml; charset=utf-8"
    root = etree.fromstring(response.data)
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = root.findall(".//outline")  # subtopics nest inside their parent's outline
    status = client.get("/status").get_json()
    assert sorted((o.get("text"), o.get("xmlUrl"), o.get("htmlUrl"), o.get("type")) for o in outlines) == sorted(
        (t["name"], f"http://localhost/feeds/{t['slug']}.rss", f"http://localhost/topics/{t['slug']}/", "rss")
        for t in status["topics"])
    nested = {(parent.get("text"), child.get("text")) for parent in root.iter("outline") for child in parent}
    names = {t["slug"]: t["name"] for t in status["topics"]}
    assert nested == {(names[t["parent"]], t["name"]) for t in status["topics"] if t["parent"]} != set()
    for outline in outlines[:3]:  # every xmlUrl resolves to a valid feed
        assert parse(client.get(outline.get("xmlUrl").replace("http://localhost", "")).data).entries


def test_newsboat_imports_the_opml_and_reads_every_feed(corpus, tmp_path):
    if NEWSBOAT is None:
        pytest.fail("newsboat is not installed (Debian package newsboat; .ci/run installs it)")
    env = {**os.environ, "HOME": str(tmp_path)}
    files = ["-u", str(tmp_path / "urls"), "-c", str(tmp_path / "cache.db"), "-C", str(tmp_path / "config")]
    (tmp_path / "urls").write_text("")
    with serve(corpus) as base:
        import urllib.request

        with urllib.request.urlopen(base + "/topics.opml") as response:
            (tmp_path / "topics.opml").write_bytes(response.read())
        with urllib.request.urlopen(base + "/status") as response:
            topics = json.load(response)["topics"]
        imported = subprocess.run([NEWSBOAT, *files, "-i", str(tmp_path / "topics.opml")], env=env,
                                  capture_output=True, text=True, timeout=60)
        assert imported.returncode == 0, imported.stderr
        urls = (tmp_path / "urls").read_text().split()
        assert sorted(urls) == sorted(f"{base}/feeds/{t['slug']}.rss" for t in topics)
        reloaded = subprocess.run([NEWSBOAT, *files, "-x", "reload", "print-unread"], env=env,
                                  capture_output=True, text=True, timeout=120)
    assert reloaded.returncode == 0, reloaded.stderr
    # newsboat fetched every feed and counts each distinct story once.
    snapshot = build_snapshot(Scanner(corpus).scan())
    distinct = {item.id for topic in snapshot.topics.values() for item in topic.items[:50]}
    assert reloaded.stdout.strip() == f"{len(distinct)} unread articles"


def test_json_feed_read_by_an_independent_library(client):
    response = client.get("/feeds/azure.json")
    assert response.headers["Content-Type"] == "application/feed+json; charset=utf-8"
    feed = jsonfeed.Feed.parse_string(response.get_data(as_text=True))
    snapshot = app_state(client.application).publisher.snapshot
    items = snapshot.topics["azure"].items
    assert feed.version == "https://jsonfeed.org/version/1.1"
    assert feed.feed_url == "http://localhost/feeds/azure.json"
    assert [i.id for i in feed.items] == [i.id for i in items]
    assert [i.title for i in feed.items] == [i.title for i in items]
    with_images = next(i for i in items if i.images)
    parsed = next(p for p in feed.items if p.id == with_images.id)
    assert parsed.image == with_images.images[0].url
    assert [(a.url, a.mime_type) for a in parsed.attachments] == [(im.url, im.mime_type) for im in with_images.images]
    assert "Azure" in parsed.tags and parsed.authors[0].name == with_images.provider.name
    # Related links travel in an extension object, which the library passes over; read it raw.
    raw = {i["id"]: i for i in json.loads(response.data)["items"]}
    with_related = next(i for i in items if i.related)
    assert [r["url"] for r in raw[with_related.id]["_syndicator"]["related"]] == [r.url for r in with_related.related]


def test_pages_escape_hostile_text(tmp_path, make_app):
    write_item(tmp_path / "news", "x.md", title="<script>alert(1)</script>", excerpt='"><img src=x onerror=alert(1)>',
               publishedDateTime="2024-01-01T00:00:00Z", webUrl="https://x.org/a", topics=["<b>Topic</b>"],
               related=[{"title": "<i>r</i>", "webUrl": "javascript:alert(1)"}])
    client = make_app(tmp_path).test_client()
    for path in ("/", "/topics/topic/"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html and "javascript:" not in html
        # Plain-text fields lose their tags when read; what is left is text, escaped on the page.
        assert "<b>" not in html and "Topic" in html
        assert path == "/" or "alert(1)" in html  # the item's title, as text


def test_pages_have_landmarks_alt_text_and_no_third_party_assets(client):
    for path in ("/", "/topics/azure/"):
        response = client.get(path)
        doc = etree.HTML(response.data)
        assert doc.find(".//main") is not None and doc.find(".//header") is not None
        assert all(img.get("alt") is not None for img in doc.iter("img"))
        for el in doc.iter("link", "script"):
            url = el.get("href") or el.get("src") or ""
            assert url.startswith("http://localhost/") or not url.startswith("http"), url
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    topic = etree.HTML(client.get("/topics/azure/").data)
    alternates = [(link.get("href"), link.get("title"))
                  for link in topic.iter("link") if link.get("rel") == "alternate"]
    formats = (("rss", "RSS"), ("atom", "Atom"), ("json", "JSON Feed"))
    assert alternates[:3] == [(f"http://localhost/feeds/azure.{fmt}", f"Azure ({name})") for fmt, name in formats]
    # Then one set per kind of item the topic holds, titled for a reader's list ("Azure: videos (RSS)").
    kinds = [k["kind"] for k in client.get("/status").get_json()["topics"][1]["kinds"]]
    labels = {"article": "articles", "video": "videos", "download": "downloads"}
    assert alternates[3:] == [(f"http://localhost/feeds/azure/{kind}.{fmt}", f"Azure: {labels[kind]} ({name})")
                              for kind in kinds for fmt, name in formats]
    assert len(kinds) >= 2
