"""deploy/nginx-static.conf under a real nginx, serving what `syndicator build` exports.

Everything goes over real HTTP: every file of the export with its exact type and bytes, the .gz siblings
for gzip readers, nginx's validators, pages and 404s; then rebuilds, which must change exactly the feeds
whose content changed (unchanged feeds keep ETag and Last-Modified: the build hard-links them) and must
never show a reader a missing or partial file while the symlink swaps.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import ROOT, SYNDICATOR, free_port, parse, write_item
from test_nginx import Reply, adapt, fetch, nginx_running

from syndicator.config import Settings
from syndicator.web import create_app

SITE = ROOT / "deploy" / "nginx-static.conf"
# What each kind of file of the export must be served as; a new kind of file fails the walk below until
# deploy/nginx-static.conf (its types block) and this table know it.
TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "opml": "text/x-opml; charset=utf-8",
    "xsl": "application/xml; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
FRESH = "public, max-age=60, stale-while-revalidate=60"  # the app's default interval
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
READER = "application/atom+xml, application/rss+xml;q=0.9, application/xml;q=0.8, */*;q=0.5"


def render_site(port: int, export: Path) -> str:
    """deploy/nginx-static.conf with its listen lines and root swapped for the test's."""
    return adapt(SITE, {
        "listen 80;": f"listen 127.0.0.1:{port};",
        "listen [::]:80;": "",
        "root /srv/syndicator/export;": f'root "{export}";',
    })


@contextmanager
def run_nginx(port: int, export: Path, root: Path) -> Iterator[str]:
    """nginx in the foreground serving `export` (the symlink) on `port`; yields the base URL."""
    base = f"http://127.0.0.1:{port}"
    with nginx_running(SITE, render_site(port, export), root, base + "/"):
        yield base


@dataclass
class StaticSite:
    """An export of `content` at the symlink `out`, served by nginx at `base` (also the build's --base-url)."""

    content: Path
    out: Path
    base: str
    cache: Path  # XDG_CACHE_HOME of the builds (the parse cache): never the real ~/.cache
    builds: list[float] = field(default_factory=list)  # seconds each build took

    def build(self) -> None:
        started = time.monotonic()
        result = subprocess.run([*SYNDICATOR, "build", "--content", str(self.content), "--out", str(self.out),
                                 "--base-url", self.base], capture_output=True, text=True, timeout=300, cwd=ROOT,
                                env={**os.environ, "XDG_CACHE_HOME": str(self.cache)})
        assert result.returncode == 0, result.stderr
        self.builds.append(time.monotonic() - started)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return fetch(self.base + path, headers)

    def manifest(self) -> dict[str, str]:
        """sha256 of every file of the current generation, by path (the build's own record)."""
        return json.loads((self.out / ".manifest.json").read_text())

    def files(self) -> list[str]:
        """Every file of the export that has a URL: not the .gz siblings, not hidden files."""
        return sorted(rel for rel in self.manifest()
                      if not rel.endswith(".gz") and not rel.rsplit("/", 1)[-1].startswith("."))


def url_of(rel: str) -> str:
    """The URL path of an export file: directories' index.html are the directory."""
    return "/" + rel.removesuffix("index.html")


@contextmanager
def static_site(content: Path, root: Path) -> Iterator[StaticSite]:
    """`content` exported under `root` and served by nginx with deploy/nginx-static.conf."""
    port = free_port()
    s = StaticSite(content=content, out=root / "srv" / "export", base=f"http://127.0.0.1:{port}",
                   cache=root / "cache")
    s.build()
    with run_nginx(port, s.out, root / "nginx") as base:
        assert base == s.base
        yield s


@pytest.fixture(scope="module")
def served(corpus_template, tmp_path_factory) -> Iterator[StaticSite]:
    """One export for the tests that only read it."""
    with static_site(corpus_template, tmp_path_factory.mktemp("static")) as s:
        yield s


@pytest.fixture
def site(corpus, tmp_path) -> Iterator[StaticSite]:
    """An export of a private copy of the corpus, for tests that change the content and rebuild."""
    with static_site(corpus, tmp_path) as s:
        yield s


class _Hrefs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag in ("a", "link") and found.get("href"):
            self.hrefs.append(found["href"])
        if tag == "script" and found.get("src"):
            self.hrefs.append(found["src"])


def hrefs(body: bytes) -> list[str]:
    parser = _Hrefs()
    parser.feed(body.decode("utf-8"))
    return parser.hrefs


# ----------------------------------------------------------------------------- serving the export


def test_every_file_is_served_with_its_type_its_bytes_and_its_gzip_sibling(served):
    export = served.out.resolve()
    files = served.files()
    assert {"index.html", "topics.opml", "feeds/all.rss", "feeds/azure.atom", "topics/azure/index.html",
            "static/feed.xsl", "static/style.css", "static/filter.js"} <= set(files)
    assert any("/archive/" in rel for rel in files)
    app = create_app(Settings(content=str(served.content), base_url=served.base)).test_client()

    for rel in files:
        url = url_of(rel)
        ext = rel.rsplit(".", 1)[-1]
        assert ext in TYPES, f"{rel}: the export has a new kind of file; give it a type in {SITE.name}"
        body = (export / rel).read_bytes()

        plain = served.get(url)
        assert plain.status == 200, url
        assert plain.headers["Content-Type"] == TYPES[ext], url
        # The very type the app sends for the same URL.
        assert plain.headers["Content-Type"] == app.get(url).headers["Content-Type"], url
        assert plain.body == body, url
        assert "Content-Encoding" not in plain.headers, url
        assert plain.headers["X-Content-Type-Options"] == "nosniff", url
        assert plain.headers["Cache-Control"] == ("public, max-age=3600" if url.startswith("/static/") else FRESH)
        assert plain.headers["Vary"] == ("Accept, Accept-Encoding" if ext in ("rss", "atom") else "Accept-Encoding")
        assert plain.headers["ETag"] and plain.headers["Last-Modified"], url
        assert ("Content-Security-Policy" in plain.headers) == (ext == "html"), url

        zipped = served.get(url, {"Accept-Encoding": "gzip, deflate, br"})
        assert zipped.status == 200, url
        assert zipped.headers["Content-Encoding"] == "gzip", url
        assert zipped.headers["Content-Type"] == TYPES[ext], url
        assert zipped.body == (export / (rel + ".gz")).read_bytes(), url
        assert gzip.decompress(zipped.body) == body, url
        assert zipped.headers["ETag"] != plain.headers["ETag"], url  # the .gz file's own validator

        refused = served.get(url, {"Accept-Encoding": "gzip;q=0, identity"})
        assert "Content-Encoding" not in refused.headers and refused.body == body, url

        if ext in ("rss", "atom"):
            self_links = [link.href for link in parse(body).feed.links if link.rel == "self"]
            assert self_links == [served.base + url], url
        elif ext == "json" and url.startswith("/feeds/"):
            assert json.loads(body)["feed_url"] == served.base + url, url


    # CDNs and proxies send Via; they get the .gz too (gzip_proxied any), to pass on or unpack themselves.
    via = served.get("/feeds/all.rss", {"Accept-Encoding": "gzip", "Via": "1.1 cdn.example"})
    assert via.headers["Content-Encoding"] == "gzip" and via.body == (export / "feeds/all.rss.gz").read_bytes()


def test_every_link_in_the_pages_and_the_opml_works(served):
    opml = ET.fromstring(served.get("/topics.opml").body)
    outlines = opml.findall(".//outline")
    assert len(outlines) == 8
    urls = {u for o in outlines for u in (o.get("xmlUrl"), o.get("htmlUrl"))}
    for page in ("/", "/topics/azure/"):
        urls.update(u for u in hrefs(served.get(page).body) if u.startswith(served.base))
    # The footer's /status is the running app's; a static export has no such file (see the report).
    urls.discard(served.base + "/status")
    assert served.base + "/feeds/azure.json" in urls and served.base + "/static/style.css" in urls
    for url in sorted(urls):
        assert fetch(url).status == 200, url


def test_pages_hidden_files_and_unknown_topics(served):
    index = served.get("/")
    assert index.status == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'href="' + served.base.encode() + b'/topics/azure/"' in index.body
    topic = served.get("/topics/azure/")
    assert topic.status == 200 and topic.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"Azure" in topic.body and b"/feeds/azure.atom" in topic.body
    assert "default-src 'none'" in topic.headers["Content-Security-Policy"]
    # Without the slash, a relative redirect to the page (it works behind a CDN or TLS terminator too).
    moved = served.get("/topics/azure")
    assert moved.status == 301 and moved.headers["Location"] == "/topics/azure/"

    # The manifest is there, and is not a URL.
    assert (served.out / ".manifest.json").is_file()
    for path in ("/.manifest.json", "/feeds/.manifest.json", "/feeds/azure.rss.gz", "/index.html.gz"):
        assert served.get(path).status == 404, path
    for path in ("/topics/no-such-topic/", "/topics/no-such-topic", "/feeds/no-such-topic.rss",
                 "/feeds/no-such-topic.json", "/feeds/azure/archive/99.atom", "/feeds/azure.xml"):
        missing = served.get(path)
        assert missing.status == 404, path
        assert missing.headers["Cache-Control"] == "public, max-age=60", path  # a topic may appear
    # No listing of any directory (and no 403 telling which exist).
    for path in ("/feeds/", "/topics/", "/static/", "/feeds/all/", "/feeds/all/archive/"):
        listing = served.get(path)
        assert listing.status == 404 and b"Index of" not in listing.body, path
    # Outside the root (the generation directories beside the symlink) nothing is reachable.
    generation = served.out.resolve().name
    assert generation.startswith(".export.gen-")
    assert served.get(f"/../{generation}/index.html").status in (400, 404)


def test_conditional_get(served):
    first = served.get("/feeds/azure.atom")
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]

    again = served.get("/feeds/azure.atom", {"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == FRESH and again.headers["Vary"] == "Accept, Accept-Encoding"
    assert served.get("/feeds/azure.atom", {"If-None-Match": f'"nope", W/{etag}'}).status == 304
    assert served.get("/feeds/azure.atom", {"If-None-Match": '"nope"'}).status == 200

    assert served.get("/feeds/azure.atom", {"If-Modified-Since": last_modified}).status == 304
    # A later date (when the reader fetched it) counts too: if_modified_since before, as in the app.
    later = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1), usegmt=True)
    assert served.get("/feeds/azure.atom", {"If-Modified-Since": later}).status == 304
    earlier = format_datetime(parsedate_to_datetime(last_modified) - dt.timedelta(days=1), usegmt=True)
    assert served.get("/feeds/azure.atom", {"If-Modified-Since": earlier}).status == 200

    zipped = served.get("/feeds/azure.atom", {"Accept-Encoding": "gzip"})
    assert served.get("/feeds/azure.atom", {"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}
                    ).status == 304
    # The plain representation's tag does not validate the gzip one.
    assert served.get("/feeds/azure.atom", {"Accept-Encoding": "gzip", "If-None-Match": etag}).status == 200

    part = served.get("/feeds/azure.atom", {"Range": "bytes=0-99"})
    assert part.status == 206 and part.body == first.body[:100] and part.headers["Cache-Control"] == FRESH

    for url in ("/", "/topics/azure/", "/topics.opml", "/feeds/all/archive/1.json", "/static/feed.xsl"):
        reply = served.get(url)
        assert served.get(url, {"If-None-Match": reply.headers["ETag"]}).status == 304, url
        assert served.get(url, {"If-Modified-Since": reply.headers["Last-Modified"]}).status == 304, url


def test_browsers_get_the_feed_as_xml_for_the_stylesheet(served):
    for url in ("/feeds/azure.rss", "/feeds/azure.atom", "/feeds/all/archive/1.rss"):
        reader = served.get(url, {"Accept": READER})
        assert reader.headers["Content-Type"] == TYPES[url.rsplit(".", 1)[1]], url
        for accept in ("*/*", "application/rss+xml, text/html", "text/html;q=0, */*"):
            assert served.get(url, {"Accept": accept}).headers["Content-Type"] == reader.headers["Content-Type"]
        browser = served.get(url, {"Accept": FIREFOX})
        assert browser.status == 200
        assert browser.headers["Content-Type"] == "application/xml; charset=utf-8", url
        assert browser.body == reader.body
        assert browser.headers["Vary"] == "Accept, Accept-Encoding"
        assert browser.headers["Cache-Control"] == FRESH and browser.headers["X-Content-Type-Options"] == "nosniff"
        # No ETag here: nginx would reuse the reader representation's. Last-Modified revalidates.
        assert "ETag" not in browser.headers
        assert served.get(url, {"Accept": FIREFOX, "If-Modified-Since": browser.headers["Last-Modified"]}
                        ).status == 304
        zipped = served.get(url, {"Accept": FIREFOX, "Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Type"] == "application/xml; charset=utf-8"
        assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.body) == reader.body
    # The stylesheet the feeds name is served with an XML type, as browsers require.
    xsl = served.get("/static/feed.xsl")
    assert xsl.status == 200 and xsl.headers["Content-Type"] == "application/xml; charset=utf-8"
    # JSON Feed has no browser view; a browser gets its own type.
    assert served.get("/feeds/azure.json", {"Accept": FIREFOX}).headers["Content-Type"] == TYPES["json"]


CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag, Last-Modified, Link"}


def cors_of(reply: Reply) -> dict[str, str]:
    return {name: value for name, value in reply.headers.items() if name.lower().startswith("access-control-")}


def test_cors_as_the_app_answers_it(served):
    """Feeds, archives, the OPML and the XSL may be read by scripts of any page, their 304s and 404s too,
    and a preflight is answered; pages and the other files get none of it (what the app does, test_access)."""
    for path in ("/feeds/azure.rss", "/feeds/all.json", "/feeds/all/archive/1.atom", "/topics.opml",
                 "/static/feed.xsl"):
        first = served.get(path)
        assert first.status == 200 and cors_of(first) == CORS, path
        again = served.get(path, {"If-None-Match": first.headers["ETag"]})
        assert again.status == 304 and cors_of(again) == CORS, path
        preflight = fetch(served.base + path, {"Origin": "https://reader.example", "Access-Control-Request-Method":
                                               "GET", "Access-Control-Request-Headers": "if-none-match"}, "OPTIONS")
        assert preflight.status == 204 and preflight.body == b"", path
        assert cors_of(preflight) == {**CORS, "Access-Control-Allow-Methods": "GET, HEAD",
                                      "Access-Control-Allow-Headers": "If-None-Match, If-Modified-Since, Cache-Control",
                                      "Access-Control-Max-Age": "86400"}, path
    assert cors_of(served.get("/feeds/no-such-topic.rss")) == CORS
    assert cors_of(served.get("/feeds/azure.rss", {"Accept": FIREFOX})) == CORS  # the browser view
    for path in ("/", "/topics/azure/", "/static/style.css"):
        assert served.get(path).status == 200 and cors_of(served.get(path)) == {}, path
        assert cors_of(fetch(served.base + path, {"Origin": "https://reader.example"}, "OPTIONS")) == {}, path


# ----------------------------------------------------------------------------- rebuilds


def test_a_rebuild_changes_exactly_the_feeds_that_changed(site):
    watched = ["/feeds/azure.rss", "/feeds/azure.atom", "/feeds/azure.json", "/feeds/kubernetes.atom",
               "/feeds/all.rss"]
    before = {(url, enc): site.get(url, {"Accept-Encoding": enc}) for url in watched for enc in ("identity", "gzip")}
    write_item(site.content / "news", "static-export-new.md", title="Brand new on Kubernetes",
               publishedDateTime="2026-01-01T00:00:00Z", webUrl="https://x.org/static-export-new",
               topics=["Kubernetes"])
    first_generation = site.out.resolve()
    site.build()
    assert site.out.resolve() != first_generation

    for (url, enc), old in before.items():
        new = site.get(url, {"Accept-Encoding": enc})
        assert new.status == 200
        body = gzip.decompress(new.body) if enc == "gzip" else new.body
        if "azure" in url:  # untouched topic: same bytes, same validators, still a 304 for readers
            assert new.body == old.body, (url, enc)
            assert new.headers["ETag"] == old.headers["ETag"], (url, enc)
            assert new.headers["Last-Modified"] == old.headers["Last-Modified"], (url, enc)
            revalidated = site.get(url, {"Accept-Encoding": enc, "If-None-Match": old.headers["ETag"]})
            assert revalidated.status == 304, (url, enc)
            assert site.get(url, {"Accept-Encoding": enc, "If-Modified-Since": old.headers["Last-Modified"]}
                            ).status == 304, (url, enc)
        else:  # the topic that got the item, and the feed of everything
            assert b"Brand new on Kubernetes" in body, (url, enc)
            assert parse(body).entries[0].title == "Brand new on Kubernetes"
            assert new.headers["ETag"] != old.headers["ETag"], (url, enc)
            assert site.get(url, {"Accept-Encoding": enc, "If-None-Match": old.headers["ETag"]}).status == 200
    # The pages show the new item as well.
    assert b"Brand new on Kubernetes" in site.get("/topics/kubernetes/").body


@dataclass
class Load:
    """Threads that GET `urls` through nginx in a loop (plain and gzip) and record what they see."""

    site: StaticSite
    urls: list[str]
    threads: int = 2
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: dict[str, set[str]] = field(default_factory=dict)  # export file -> sha256 of bodies served for it
    failures: list[str] = field(default_factory=list)
    done: int = 0  # responses checked
    _verified: set[str] = field(default_factory=set)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, offset: int) -> None:
        requests = [(url, enc) for url in self.urls for enc in ("identity", "gzip")]
        n = offset
        while not self.stop.is_set():
            url, enc = requests[n % len(requests)]
            n += 1
            try:
                reply = self.site.get(url, {"Accept-Encoding": enc})
                self._check(url, enc, reply)
            except Exception as exc:  # a reset, an IncompleteRead, a bad body: all failures
                with self.lock:
                    self.failures.append(f"{url} ({enc}): {type(exc).__name__}: {exc}")

    def _check(self, url: str, enc: str, reply: Reply) -> None:
        if reply.status != 200:
            raise AssertionError(f"HTTP {reply.status}")
        rel = url.lstrip("/") + (".gz" if enc == "gzip" else "")
        if (enc == "gzip") != (reply.headers.get("Content-Encoding") == "gzip"):
            raise AssertionError(f"Content-Encoding {reply.headers.get('Content-Encoding')!r}")
        digest = hashlib.sha256(reply.body).hexdigest()
        with self.lock:
            known = digest in self._verified
        if not known:  # each distinct body is parsed once: a complete, well-formed feed
            body = gzip.decompress(reply.body) if enc == "gzip" else reply.body
            if url.endswith(".json"):
                assert json.loads(body)["items"]
            else:
                parse(body)
        with self.lock:
            self._verified.add(digest)
            self.seen.setdefault(rel, set()).add(digest)
            self.done += 1

    def __enter__(self) -> Load:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(i * 3,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def wait_for(self, rel: str, digest: str, timeout: float = 60) -> None:
        """Poll until a response with exactly these bytes for `rel` has been seen."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if digest in self.seen.get(rel, set()) or self.failures:
                    return
            assert time.monotonic() < deadline, f"nginx never served the new {rel} within {timeout} s"
            time.sleep(0.05)


def test_readers_never_see_a_missing_or_partial_file_while_the_export_swaps(site):
    urls = ["/feeds/kubernetes.rss", "/feeds/kubernetes.atom", "/feeds/kubernetes.json", "/feeds/all.rss",
            "/feeds/all.atom", "/feeds/azure.rss", "/feeds/all/archive/1.atom"]
    allowed: dict[str, set[str]] = {}  # every version of every file that any generation held

    def remember() -> dict[str, str]:
        manifest = site.manifest()
        for rel, digest in manifest.items():
            allowed.setdefault(rel, set()).add(digest)
        return manifest

    initial = remember()
    with Load(site, urls) as load:
        load.wait_for("feeds/kubernetes.atom", initial["feeds/kubernetes.atom"])
        for n in range(3):
            write_item(site.content / "news", f"swap-{n}.md", title=f"Swap number {n}",
                       publishedDateTime=f"2026-02-0{n + 1}T00:00:00Z", webUrl=f"https://x.org/swap-{n}",
                       topics=["Kubernetes"])
            with load.lock:
                during = load.done
            site.build()
            with load.lock:
                during = load.done - during
            assert during > 0, "no request completed while the build ran"  # the load overlapped the swap
            manifest = remember()
            # Keep loading until nginx has served the new generation of the changed feeds.
            for url in ("/feeds/kubernetes.atom", "/feeds/all.rss"):
                load.wait_for(url.lstrip("/"), manifest[url.lstrip("/")])
                load.wait_for(url.lstrip("/") + ".gz", manifest[url.lstrip("/") + ".gz"])
            assert not load.failures, load.failures[:10]
    assert not load.failures, f"{len(load.failures)} bad responses, e.g. {load.failures[:10]}"
    # Every body served was exactly one generation's file: never a mix, a truncation or an empty file.
    for rel, digests in load.seen.items():
        assert digests <= allowed[rel], rel
    # The changed feeds went through all four versions, the unchanged one stayed one file.
    assert len(load.seen["feeds/kubernetes.atom"]) == 4
    assert load.seen["feeds/azure.rss"] == allowed["feeds/azure.rss"] and len(allowed["feeds/azure.rss"]) == 1
    # Only the current and the previous generation stay on disk.
    assert len(list(site.out.parent.glob(".export.gen-*"))) == 2
    print(f"{load.done} checked responses over {len(site.builds)} builds "
          f"({', '.join(f'{s:.1f}' for s in site.builds)} s)")
