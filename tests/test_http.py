"""Polling done right: validators, 304s, caching headers, gzip, HEAD, methods, and ETags across processes."""

from __future__ import annotations

import gzip
import urllib.request
from email.utils import parsedate_to_datetime

import pytest
from helpers import parse, serve

from syndicator.scan import Scanner
from syndicator.snapshot import Publisher, build_snapshot
from syndicator.web import app_state


@pytest.fixture
def client(corpus, make_app):
    return make_app(corpus, interval=120).test_client()


def newest_in(client, slug: str):
    publisher: Publisher = app_state(client.application).publisher
    items = publisher.snapshot.all_items if slug == "all" else publisher.snapshot.topics[slug].items
    return max(i.updated for i in items[:50])


def test_validators_and_caching_headers(client):
    # A topic whose newest item is not the site's: Last-Modified must tell them apart.
    snapshot = app_state(client.application).publisher.snapshot
    slug = next(s for s in snapshot.topics if newest_in(client, s) != newest_in(client, "all"))
    response = client.get(f"/feeds/{slug}.atom")
    assert response.status_code == 200
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    # Last-Modified is the newest item of this feed, not of the site and not the render time.
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == newest_in(client, slug).replace(
        microsecond=0)
    assert response.headers["Cache-Control"] == "public, max-age=120, stale-while-revalidate=120"
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/feeds/kubernetes.json").headers["Vary"] == "Accept-Encoding"


def test_if_none_match_forms(client):
    etag = client.get("/feeds/azure.rss").headers["ETag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        response = client.get("/feeds/azure.rss", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.data == b"" and response.headers["ETag"] == etag
    assert client.get("/feeds/azure.rss", headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_304_carries_only_what_updates_the_cached_copy(corpus, make_app):
    """RFC 9110 15.4.5: ETag, Cache-Control and Vary (and a feed's CORS headers) as the 200 had them, no other
    metadata: a cache keeps the stored response's other headers (Link, Last-Modified, the security headers),
    and a poller's every 304 stays small. Feeds (the fast path) and pages (Flask) alike."""
    client = make_app(corpus, base_url="https://feeds.example.com", hub_url="https://hub.example.com/").test_client()
    for url in ("/feeds/azure.rss", "/feeds/azure.json", "/"):
        full = client.get(url)
        assert full.status_code == 200, url
        # The 200 carries more than the revalidation fields: that is what the 304 leaves out.
        left_out = {"Last-Modified", "X-Content-Type-Options", "Referrer-Policy"} | (
            {"Link"} if url.startswith("/feeds/") else set())
        assert left_out <= set(full.headers.keys()), (url, full.headers)
        again = client.get(url, headers={"If-None-Match": full.headers["ETag"]})
        assert again.status_code == 304 and again.data == b"", url
        # Feeds are read by scripts of other origins, and browsers check CORS on a 304 as well.
        cors = {"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"} if url.startswith("/feeds/") else set()
        assert {name for name, _ in again.headers} - {"Content-Length"} == {"ETag", "Cache-Control", "Vary"} | cors, url
        for name in ("ETag", "Cache-Control", "Vary", *cors):
            assert again.headers[name] == full.headers[name], (url, name)


def test_if_modified_since_and_precedence(client):
    response = client.get("/feeds/azure.rss")
    last_modified = response.headers["Last-Modified"]
    assert client.get("/feeds/azure.rss", headers={"If-Modified-Since": last_modified}).status_code == 304
    assert client.get("/feeds/azure.rss", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
                      ).status_code == 200
    assert client.get("/feeds/azure.rss", headers={"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match wins when both are sent: a stale tag means 200 even with a current date.
    both = client.get("/feeds/azure.rss", headers={"If-None-Match": '"stale"', "If-Modified-Since": last_modified})
    assert both.status_code == 200


def test_gzip_is_precompressed_and_has_its_own_etag(client):
    plain = client.get("/feeds/all.atom")
    zipped = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip;q=0"}).data == plain.data
    # The same compressed bytes every time: compressed once per snapshot, not per request.
    again = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    assert again.data == zipped.data
    assert client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip",
                                                  "If-None-Match": zipped.headers["ETag"]}).status_code == 304


def test_head_and_methods(client):
    get = client.get("/feeds/azure.rss")
    head = client.head("/feeds/azure.rss")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(get.data))
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = client.open("/feeds/azure.rss", method=method)
        assert response.status_code == 405, method
        assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}


def test_index_and_html_pages_are_conditional_too(client):
    response = client.get("/")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert client.get("/", headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


def test_link_headers_advertise_self_and_hub(corpus, make_app):
    client = make_app(corpus, base_url="https://feeds.example.com", hub_url="https://hub.example.com/").test_client()
    response = client.get("/feeds/azure.atom")
    assert response.headers["Link"] == ('<https://hub.example.com/>; rel="hub", '
                                        '<https://feeds.example.com/feeds/azure.atom>; rel="self"')
    for fmt in ("rss", "atom"):
        links = {(link.rel, link.href) for link in parse(client.get(f"/feeds/azure.{fmt}").data).feed.links}
        assert ("hub", "https://hub.example.com/") in links
        assert ("self", f"https://feeds.example.com/feeds/azure.{fmt}") in links


def test_trusted_proxy_headers_only_when_configured(corpus, make_app):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.org",
               "X-Forwarded-Prefix": "/news"}
    untrusted = make_app(corpus).test_client().get("/feeds/azure.atom", headers=headers)
    assert "http://localhost/feeds/azure.atom" in untrusted.headers["Link"]
    trusted = make_app(corpus, trusted_proxies=1).test_client().get("/feeds/azure.atom", headers=headers)
    assert "<https://public.example.org/news/feeds/azure.atom>" in trusted.headers["Link"]
    self_links = [link.href for link in parse(trusted.data).feed.links if link.rel == "self"]
    assert self_links == ["https://public.example.org/news/feeds/azure.atom"]
    configured = make_app(corpus, trusted_proxies=1, base_url="https://fixed.example").test_client()
    assert "<https://fixed.example/feeds/azure.atom>" in configured.get("/feeds/azure.atom",
                                                                        headers=headers).headers["Link"]


def test_bad_host_header_is_a_clean_400(client):
    response = client.get("/feeds/azure.rss", headers={"Host": "evil.example/<script>"})
    assert response.status_code == 400 and b"Traceback" not in response.data


def fetch_etags(base: str, paths) -> dict[str, set[str]]:
    tags: dict[str, set[str]] = {}
    for path in paths:
        for _ in range(4):  # several connections, so both workers of a server answer
            with urllib.request.urlopen(base + path) as response:
                tags.setdefault(path, set()).add(response.headers["ETag"])
    return tags


def test_workers_and_processes_agree_on_every_etag(corpus):
    snapshot = build_snapshot(Scanner(corpus).scan())
    paths = [f"/feeds/{slug}.{fmt}" for slug in ("all", *snapshot.topics) for fmt in ("rss", "atom", "json")]
    public = ["--base-url", "https://feeds.example.com", "--workers", "2"]
    with serve(corpus, *public) as first, serve(corpus, *public) as second:
        a = fetch_etags(first, paths)
        b = fetch_etags(second, paths)
    assert all(len(tags) == 1 for tags in a.values())
    assert a == b


BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")


def test_browsers_get_a_styled_page_and_readers_the_plain_feed(client):
    import feedparser

    for fmt, feed_type in (("rss", "application/rss+xml"), ("atom", "application/atom+xml")):
        browser = client.get(f"/feeds/azure.{fmt}", headers={"Accept": BROWSER_ACCEPT})
        assert browser.headers["Content-Type"] == "application/xml; charset=utf-8"
        assert b'<?xml-stylesheet type="text/xsl" href="http://localhost/static/feed.xsl"?>' in browser.data
        for accept in (None, "*/*", feedparser.http.ACCEPT_HEADER,
                       "application/rss+xml, application/atom+xml, text/html;q=0.5"):
            headers = {"Accept": accept} if accept else {}
            reader = client.get(f"/feeds/azure.{fmt}", headers=headers)
            assert reader.headers["Content-Type"] == f"{feed_type}; charset=utf-8", accept
            assert reader.data == browser.data  # same bytes, only the label differs
        assert reader.headers["ETag"] != browser.headers["ETag"]
    xsl = client.get("/static/feed.xsl")
    assert xsl.status_code == 200 and xsl.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert b"<xsl:stylesheet" in xsl.data


@pytest.mark.parametrize("headers", [
    {}, {"Accept-Encoding": "gzip"}, {"Accept": BROWSER_ACCEPT}, {"If-None-Match": "*"},
    {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
])
def test_fast_path_and_flask_answer_alike(client, headers):
    """Plain feed URLs are answered by the WSGI fast path; with a query string Flask answers."""
    fast = client.get("/feeds/azure.atom", headers=headers)
    slow = client.get("/feeds/azure.atom?via=flask", headers=headers)
    assert fast.status_code == slow.status_code
    assert fast.data == slow.data
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())
