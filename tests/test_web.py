"""The HTTP surface over the Flask test client: routes, status, health, and changes between rescans."""

from __future__ import annotations

import shutil

from helpers import bump_mtime, parse, poll, served_files, write_item

from syndicator.config import Settings
from syndicator.scheduler import Rescanner
from syndicator.snapshot import Publisher
from syndicator.web import app_state, create_app

FEED_TYPES = {"rss": "application/rss+xml; charset=utf-8", "atom": "application/atom+xml; charset=utf-8",
              "json": "application/feed+json; charset=utf-8"}


def all_feeds(client, slugs):
    return {(slug, fmt): client.get(f"/feeds/{slug}.{fmt}").data for slug in slugs for fmt in ("rss", "atom")}


def test_every_topic_has_feeds_with_exact_types(client, corpus):
    status = client.get("/status").get_json()
    slugs = [t["slug"] for t in status["topics"]]
    assert len(slugs) == 8 and status["items"] == served_files(corpus)
    for slug in ["all", *slugs]:
        for fmt, ctype in FEED_TYPES.items():
            response = client.get(f"/feeds/{slug}.{fmt}")
            assert response.status_code == 200, (slug, fmt)
            assert response.headers["Content-Type"] == ctype
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            if fmt != "json":
                parsed = parse(response.data)
                expected = next((t["items"] for t in status["topics"] if t["slug"] == slug), status["items"])
                assert len(parsed.entries) == min(expected, 50)


def test_unknown_topic_is_a_404_that_names_it(client):
    response = client.get("/feeds/no-such-topic.rss")
    assert response.status_code == 404 and b"no-such-topic" in response.data
    assert client.get("/feeds/azure.xml").status_code == 404
    assert client.get("/topics/no-such-topic/").status_code == 404


def test_index_lists_topics_with_autodiscovery(client):
    html = client.get("/").get_data(as_text=True)
    assert '<link rel="alternate" type="application/rss+xml"' in html
    assert 'href="http://localhost/feeds/azure.atom"' in html and "Azure" in html


def test_self_links_use_base_url_when_configured(corpus, make_app):
    client = make_app(corpus, base_url="https://feeds.example.com/news").test_client()
    parsed = parse(client.get("/feeds/azure.atom").data)
    assert {link.href for link in parsed.feed.links if link.rel == "self"} == {
        "https://feeds.example.com/news/feeds/azure.atom"}
    assert parsed.feed.link == "https://feeds.example.com/news/topics/azure/"


def test_status_lists_problems_and_healthz_reports(tmp_path, corpus, make_app):
    (corpus / "news" / "broken.md").write_text("---\ntitle: [x\n---\n", encoding="utf-8")
    app = make_app(corpus)
    client = app.test_client()
    status = client.get("/status").get_json()
    assert status["problems"] == [{"path": "news/broken.md", "reason": status["problems"][0]["reason"],
                                   "stale": False}]
    assert "invalid YAML" in status["problems"][0]["reason"]
    assert status["last_scan"] and status["scan_seconds"] >= 0
    assert client.get("/healthz").data == b"ok\n"

    shutil.rmtree(corpus)  # the content directory vanishes: feeds stay, health says degraded
    rescanner = app_state(app).rescanner
    assert rescanner.run_once() is False
    health = client.get("/healthz")
    assert health.status_code == 200 and health.data.startswith(b"degraded:") and b"does not exist" in health.data
    assert client.get("/feeds/azure.rss").status_code == 200
    assert client.get("/status").get_json()["healthy"] is False


def test_healthz_is_503_before_the_first_snapshot(corpus):
    app = create_app(Settings(content=str(corpus)), scan=False)
    client = app.test_client()
    assert client.get("/healthz").status_code == 503
    assert client.get("/feeds/all.rss").status_code == 503


def test_failed_rescan_keeps_last_feeds(corpus, make_app, monkeypatch):
    app = make_app(corpus)
    client = app.test_client()
    before = client.get("/feeds/all.atom").data
    rescanner = app_state(app).rescanner
    write_item(corpus / "news", "new.md", title="New", publishedDateTime="2030-01-01T00:00:00Z",
               webUrl="https://x.org/new", topics=["Azure"])

    def explode(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("syndicator.scheduler.build_snapshot", explode)
    assert rescanner.run_once() is False
    assert client.get("/feeds/all.atom").data == before
    assert b"disk on fire" in client.get("/healthz").data


def test_add_modify_delete_change_exactly_the_affected_feeds(corpus, make_app):
    app = make_app(corpus, base_url="http://feeds.test")
    client = app.test_client()
    rescanner = app_state(app).rescanner
    slugs = ["all", *[t["slug"] for t in client.get("/status").get_json()["topics"]]]
    before = all_feeds(client, slugs)

    # Add: a story in Kubernetes only.
    write_item(corpus / "news", "2025-01-01-new.md", title="Brand new", publishedDateTime="2025-01-01T00:00:00Z",
               webUrl="https://news.example.org/brand-new", topics=["Kubernetes"])
    assert rescanner.run_once() is True
    after = all_feeds(client, slugs)
    changed = {slug for (slug, _fmt) in before if before[(slug, _fmt)] != after[(slug, _fmt)]}
    assert changed == {"all", "kubernetes"}
    assert parse(after[("kubernetes", "atom")]).entries[0].title == "Brand new"

    # Modify: retitle a Security story; exactly its topics' feeds and the all-items feed change.
    # The newest Security story is sure to be in the all-items feed (the newest 50).
    newest = app_state(app).publisher.snapshot.topics["security"].items[0]
    path = corpus / newest.path
    topics = client.get("/status").get_json()["topics"]
    names = {t["name"]: t["slug"] for t in topics}
    parent = {t["slug"]: t["parent"] for t in topics}
    expected = {"all"} | {names[name] for name in newest.topics}
    while any(parent[slug] and parent[slug] not in expected for slug in expected - {"all"}):
        expected |= {parent[slug] for slug in expected - {"all"} if parent[slug]}  # a parent holds its subtopics'
    assert "ai" in expected  # Security is a subtopic of AI in the generated corpus
    path.write_text(path.read_text(encoding="utf-8").replace("title: ", "title: Retitled ", 1), encoding="utf-8")
    bump_mtime(path)
    assert rescanner.run_once() is True
    again = all_feeds(client, slugs)
    changed = {slug for (slug, _fmt) in after if after[(slug, _fmt)] != again[(slug, _fmt)]}
    assert changed == expected

    # Delete: the new story goes again and the feeds return to what they were.
    (corpus / "news" / "2025-01-01-new.md").unlink()
    assert rescanner.run_once() is True
    final = all_feeds(client, slugs)
    assert final[("kubernetes", "rss")] == before[("kubernetes", "rss")]

    # No change: nothing is republished.
    assert rescanner.run_once() is False


def test_real_scheduler_picks_up_a_new_file(corpus):
    publisher = Publisher()
    settings = Settings(content=str(corpus), interval=1)
    rescanner = Rescanner(settings, publisher)
    rescanner.run_once()
    app = create_app(settings, publisher=publisher)
    client = app.test_client()
    assert b"Scheduled story" not in client.get("/feeds/all.rss").data
    rescanner.start()
    try:
        write_item(corpus / "news", "sched.md", title="Scheduled story", publishedDateTime="2025-06-01T00:00:00Z",
                   webUrl="https://x.org/sched", topics=["Azure"])
        poll(lambda: b"Scheduled story" in client.get("/feeds/azure.rss").data, 30,
             "the scheduler's rescan publishes the new file")
    finally:
        rescanner.stop()


def test_limit_query_parameter_is_validated(client):
    assert len(parse(client.get("/feeds/all.rss?limit=3").data).entries) == 3
    bad = client.get("/feeds/all.rss?limit=abc")
    assert bad.status_code == 400 and b"limit must be a whole number from 1 to 50" in bad.data
    assert client.get("/feeds/all.rss?limit=0").status_code == 400
    assert client.get("/feeds/all.rss?utm_source=x").status_code == 200  # unknown parameters are ignored
