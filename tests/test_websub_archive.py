"""WebSub pings for exactly the changed feeds, and RFC 5005 archives that give every item exactly once."""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import bump_mtime, parse, write_item

from syndicator.web import app_state


class Hub:
    """A tiny WebSub hub on loopback that records publish pings; can be told to fail first."""

    def __init__(self, fail_first: int = 0):
        self.pings: list[dict] = []
        self.fail_first = fail_first
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if hub.fail_first > 0:
                    hub.fail_first -= 1
                    self.send_response(503)
                else:
                    hub.pings.append(dict(urllib.parse.parse_qsl(body)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.close()


def websub_app(make_app, corpus, hub_url, tmp_path):
    app = make_app(corpus, base_url="https://feeds.example.com", hub_url=hub_url)
    pinger = app_state(app).pinger
    pinger._lock_path = str(tmp_path / "websub.lock")  # a private lock, not shared with other tests
    pinger.backoff = 0.01
    return app, pinger


def test_hub_is_pinged_for_exactly_the_changed_feeds(corpus, make_app, hub, tmp_path):
    app, pinger = websub_app(make_app, corpus, hub.url, tmp_path)
    rescanner = app_state(app).rescanner
    assert rescanner.run_once() is False and hub.pings == []  # no change, no ping

    write_item(corpus / "news", "2026-01-01-new.md", title="New", publishedDateTime="2026-01-01T00:00:00Z",
               webUrl="https://x.org/new", topics=["Kubernetes"])
    assert rescanner.run_once() is True
    assert pinger.drain()
    urls = sorted(p["hub.url"] for p in hub.pings)
    # The new item is an article (the default kind): the article feeds of its topic and of all change too.
    assert urls == sorted(f"https://feeds.example.com/feeds/{slug}{kind}.{fmt}"
                          for slug in ("all", "kubernetes") for kind in ("", "/article")
                          for fmt in ("rss", "atom", "json"))
    assert all(p["hub.mode"] == "publish" for p in hub.pings)

    # A touch that changes no bytes (same content, new mtime) pings nothing.
    hub.pings.clear()
    path = corpus / "news" / "2026-01-01-new.md"
    bump_mtime(path)
    rescanner.run_once()
    assert pinger.drain() and hub.pings == []


def test_failed_pings_are_retried_with_backoff(corpus, make_app, tmp_path):
    hub = Hub(fail_first=2)
    try:
        app, pinger = websub_app(make_app, corpus, hub.url, tmp_path)
        write_item(corpus / "news", "2026-01-01-new.md", title="New", publishedDateTime="2026-01-01T00:00:00Z",
                   webUrl="https://x.org/new", topics=["Kubernetes"])
        app_state(app).rescanner.run_once()
        assert pinger.drain()
        assert len(hub.pings) == 12  # two failures were retried; every changed feed got through
    finally:
        hub.close()


def test_only_one_process_pings(corpus, make_app, hub, tmp_path):
    _, first = websub_app(make_app, corpus, hub.url, tmp_path)
    _, second = websub_app(make_app, corpus, hub.url, tmp_path)
    assert first._is_leader() is True
    assert second._is_leader() is False


def collect_archives(client, slug: str, fmt: str):
    """Follow prev-archive links from the subscription feed, as an RFC 5005 reader does."""
    seen, docs = [], []
    url = f"/feeds/{slug}.{fmt}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, url
        parsed = parse(response.data)
        docs.append((url, parsed, response))
        seen.extend(e.id for e in parsed.entries)
        prev = [link.href for link in parsed.feed.get("links", []) if link.rel == "prev-archive"]
        url = prev[0].replace("http://localhost", "") if prev else None
    return seen, docs


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_archives_give_every_item_exactly_once(corpus, make_app, fmt):
    app = make_app(corpus, feed_limit=5)
    client = app.test_client()
    topic = app_state(app).publisher.snapshot.topics["azure"]
    assert len(topic.items) > 12
    seen, docs = collect_archives(client, "azure", fmt)
    assert sorted(seen) == sorted(i.id for i in topic.items) and len(seen) == len(set(seen))
    current_url, current, _ = docs[0]
    assert len(current.entries) == 5 and b"<fh:archive" not in client.get(current_url).data
    for url, parsed, response in docs[1:]:
        assert b"<fh:archive" in response.data
        rels = {link.rel: link.href for link in parsed.feed.links}
        assert rels["current"] == f"http://localhost/feeds/azure.{fmt}"
        assert rels["self"] == "http://localhost" + url
    # Page 1 is the oldest and full pages are cacheable for a long time; next-archive links run forward.
    page1 = client.get(f"/feeds/azure/archive/1.{fmt}")
    assert "max-age=2592000" in page1.headers["Cache-Control"]
    assert {link.rel for link in parse(page1.data).feed.links} >= {"next-archive", "current"}
    assert client.get(f"/feeds/azure/archive/99.{fmt}").status_code == 404


def test_full_archive_pages_never_change_when_new_items_arrive(corpus, make_app):
    app = make_app(corpus, feed_limit=5)
    client = app.test_client()
    before = client.get("/feeds/azure/archive/1.atom").data
    for n in range(3):
        write_item(corpus / "news", f"2027-0{n + 1}-01-new.md", title=f"New {n}",
                   publishedDateTime=f"2026-0{n + 1}-01T00:00:00Z", webUrl=f"https://x.org/new{n}", topics=["Azure"])
    assert app_state(app).rescanner.run_once()
    assert client.get("/feeds/azure/archive/1.atom").data == before
    seen, _ = collect_archives(client, "azure", "atom")
    assert len(seen) == len(set(seen)) == len(app_state(app).publisher.snapshot.topics["azure"].items)
