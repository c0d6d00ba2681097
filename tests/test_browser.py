"""The pages and the feed view in a real headless Chromium (Debian `chromium`, driven by Playwright).

Item images point at a small image server on loopback, so the browser really loads and lays them out.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import threading
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import ROOT, parse, poll, serve, write_item

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Screenshots go to docs/ (shown in the README) when asked for, else to a scratch directory.
UPDATE_DOCS = os.environ.get("SYNDICATOR_UPDATE_DOCS") == "1"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return ROOT / "docs" if UPDATE_DOCS else tmp_path_factory.mktemp("screenshots")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG, made here so the test needs no image files."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    for n, colour in enumerate(colours):
        (root / f"{n}.png").write_bytes(png(320, 180, colour))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


TOPICS = ["Azure", "AI", "Security", "Kubernetes", "Quantum Computing", "Power Apps"]


@pytest.fixture(scope="module")
def site_content(tmp_path_factory, image_server) -> Path:
    """A small content tree whose images the browser can load."""
    content = tmp_path_factory.mktemp("site")
    # Story 8 is a video and story 2 a downloadable sample (both Security), as real sites mix them.
    kinds = {8: {"type": "video", "length": "PT13M34S",
                 "featuredContent": '<iframe src="https://www.youtube.com/embed/abc"></iframe>'},
             2: {"type": "download", "actions": [{"url": "https://downloads.example.org/sample.zip",
                                                   "type": "download", "title": "Download Source Code"}]}}
    for n in range(18):
        topic = TOPICS[n % len(TOPICS)]
        provider = {"name": "Example News", "domain": "example.org", "images": [{"url": f"{image_server}/5.png"}]}
        if n == 2:
            provider["authors"] = [{"name": "April Dunnam"}]
        write_item(content / "news", f"2024-01-{n + 1:02d}-story-{n}.md", **kinds.get(n, {}),
                   title=f"{topic} story number {n}", excerpt=f"What happened in {topic} on day {n + 1}.",
                   publishedDateTime=f"2024-01-{n + 1:02d}T09:00:00Z", webUrl=f"https://news.example.org/{n}",
                   provider=provider, topics=[topic],
                   images=[{"url": f"{image_server}/{(n + n // 6) % 6}.png", "width": 320, "height": 180,
                            "title": f"Picture for story {n}"}],
                   related=[{"title": f"Background on {topic}", "webUrl": f"https://other.example.net/{n}"}])
    return content


@pytest.fixture(scope="module")
def site(site_content):
    """The content served by `syndicator serve`."""
    with serve(site_content, "--title", "Tech news") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (Debian package chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_index_lists_topics_with_subscribe_links_and_filter(browser, site, shots):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(site + "/")
    assert page.title() == "Tech news"
    names = page.locator("li.topic h2").all_inner_texts()
    assert sorted(names) == sorted(TOPICS)
    azure = page.locator("li.topic", has_text="Azure")
    assert azure.locator(".meta").inner_text() == "3 stories, latest 2024-01-13"
    assert azure.locator("a", has_text="JSON").get_attribute("href") == site + "/feeds/azure.json"
    # Thumbnails really load (naturalWidth > 0) from the image host.
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)")
    assert page.evaluate("() => [...document.querySelectorAll('img.thumb')].map(i => i.naturalWidth)") == [320] * 6
    # The filter box narrows the list (it is hidden without JavaScript, where all topics show anyway).
    page.fill("#filter", "comp")
    assert page.locator("li.topic:visible h2").all_inner_texts() == ["Quantum Computing"]
    page.fill("#filter", "")
    assert page.locator("li.topic:visible").count() == 6
    page.screenshot(path=str(shots / "index.png"), full_page=True)
    assert (shots / "index.png").stat().st_size > 10_000
    page.close()


def test_topic_page_shows_items_images_and_related(browser, site, shots):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(site + "/topics/security/")
    assert page.locator("h1").inner_text() == "Security"
    titles = page.locator("article h2").all_inner_texts()
    assert titles == ["Security story number 14", "Security story number 8", "Security story number 2"]
    page.wait_for_function("() => [...document.querySelectorAll('article img')].every(i => i.complete)")
    widths = page.evaluate("() => [...document.querySelectorAll('article img:not(.logo)')].map(i => i.naturalWidth)")
    assert widths == [320, 320, 320]
    assert page.locator("article").first.locator(".related a").inner_text() == "Background on Security"
    assert "Example News" in page.locator("article .meta").first.inner_text()
    video, sample = page.locator("article").nth(1), page.locator("article").nth(2)
    assert video.locator(".meta").inner_text().startswith("Video · 13:34")
    assert video.locator(".offer a").inner_text() == "Watch the video (13:34)"
    assert sample.locator(".offer a").inner_text() == "Download Source Code (.zip)"
    assert sample.locator(".offer a").get_attribute("href") == "https://downloads.example.org/sample.zip"
    assert "April Dunnam" in sample.locator(".meta").inner_text()
    assert page.locator("article .meta img.logo").count() == 3  # the provider's logo beside its name
    page.screenshot(path=str(shots / "topic.png"), full_page=True)
    page.close()


def test_autodiscovery_links_resolve_to_valid_feeds(browser, site):
    page = browser.new_page()
    page.goto(site + "/topics/ai/")
    hrefs = page.eval_on_selector_all("link[rel=alternate]", "els => els.map(e => [e.type, e.href])")
    types = ["application/rss+xml", "application/atom+xml", "application/feed+json"]
    # The topic's feeds, then the same per kind of item (here only articles).
    assert [t for t, _ in hrefs] == types * 2
    assert [h.split("/feeds/", 1)[1] for _, h in hrefs[3:]] == ["ai/article.rss", "ai/article.atom", "ai/article.json"]
    for kind, href in hrefs[:2] + hrefs[3:5]:
        response = page.request.get(href, headers={"Accept": kind})
        assert response.ok and response.headers["content-type"].startswith(kind)
        assert [e.title for e in parse(response.body()).entries] == [
            "AI story number 13", "AI story number 7", "AI story number 1"]
    page.close()


def test_opening_a_feed_in_the_browser_shows_a_readable_page(browser, site, shots):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    for fmt in ("rss", "atom"):
        page.goto(f"{site}/feeds/azure.{fmt}")
        assert page.locator("h1").inner_text() == "Tech news: Azure"
        assert page.locator("article h2").all_inner_texts() == [
            "Azure story number 12", "Azure story number 6", "Azure story number 0"]
        assert "feeds/azure." + fmt in page.locator("header code").inner_text()
    page.screenshot(path=str(shots / "feed.png"), full_page=True)
    page.close()


def test_pages_work_without_javascript_and_on_a_phone(browser, site):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto(site + "/")
    assert page.locator("li.topic").count() == 6 and not page.locator("#filter").is_visible()
    # Nothing overflows sideways on a narrow screen.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    context.close()



# What a web feed reader on another origin does: fetch a feed, read it and its validators, then poll with
# If-None-Match (not a CORS-safelisted header, so the browser sends a preflight OPTIONS first).
READER_SCRIPT = """async (base) => {
    const feed = await fetch(base + "/feeds/security.json");
    const out = {status: feed.status, etag: feed.headers.get("ETag"), modified: feed.headers.get("Last-Modified"),
                 title: (await feed.json()).title};
    const again = await fetch(base + "/feeds/security.json", {headers: {"If-None-Match": out.etag}});
    Object.assign(out, {again: again.status, againEtag: again.headers.get("ETag")});
    out.rss = (await (await fetch(base + "/feeds/security.rss")).text()).includes("<rss");
    out.opml = (await fetch(base + "/topics.opml")).status;
    out.xsl = (await fetch(base + "/static/feed.xsl")).status;
    for (const path of ["/status", "/metrics"]) {
        try { await fetch(base + path); out[path] = "read"; } catch (e) { out[path] = e.name; }
    }
    return out;
}"""


@pytest.fixture
def reader_page(tmp_path):
    """A web feed reader's page, on another origin (another loopback port) than syndicator's."""
    (tmp_path / "reader.html").write_text("<!doctype html><title>A web feed reader</title>", encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reader.html"
    server.shutdown()


def test_a_page_on_another_origin_reads_feeds_but_not_the_operations_endpoints(browser, site_content, reader_page,
                                                                               tmp_path):
    log = tmp_path / "serve.log"
    with serve(site_content, "--title", "Tech news", log=log) as base:
        page = browser.new_page()
        page.goto(reader_page)
        assert page.evaluate("() => location.origin") != base
        seen = page.evaluate(READER_SCRIPT, base)
        page.close()

        def logged(request: str, status: int) -> bool:
            return bool(re.search(rf'"{re.escape(request)} HTTP/1\.1" {status} ', log.read_text(errors="replace")))

        # The browser really asked first, and really got /status: what it refused was reading the answer.
        poll(lambda: logged("OPTIONS /feeds/security.json", 204) and logged("GET /status", 200), 10,
             "the preflight and the /status request in the access log")
    assert seen["status"] == 200 and seen["title"] == "Tech news: Security"
    assert seen["etag"].startswith('"') and seen["modified"].endswith(" GMT")
    assert seen["again"] == 304 and seen["againEtag"] == seen["etag"]
    assert seen["rss"] is True and seen["opml"] == 200 and seen["xsl"] == 200
    assert seen["/status"] == "TypeError" and seen["/metrics"] == "TypeError"  # blocked by CORS
