"""deploy/nginx-proxy.conf under a real nginx in front of `syndicator serve --trusted-proxies 1`.

Everything goes over real HTTP through nginx: public self links under the /news prefix, conditional GET,
gzip, and the proxy cache (hits that never reach the app, expiry revalidated with the app's validators).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import ROOT, Reply, fetch, free_port, parse, serve, stop, wait_http

SITE = ROOT / "deploy" / "nginx-proxy.conf"
PREFIX = "/news"  # the location deploy/nginx-proxy.conf serves the app under
FEED = "/feeds/azure.atom"


def nginx_binary(site: Path = SITE) -> str:
    """The nginx executable. Missing nginx fails rather than skips: a skip would ship an untested config."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        pytest.fail(f"nginx is not installed; these tests run deploy/{site.name} under a real nginx. "
                    "On Debian: apt-get install -y --no-install-recommends nginx", pytrace=False)
    return found


def adapt(site: Path, swaps: dict[str, str]) -> str:
    """A deploy/ site file with a few literal values swapped for the test's; each must occur exactly once."""
    text = site.read_text(encoding="utf-8")
    for old, new in swaps.items():
        count = text.count(old)
        assert count == 1, f"{site.name} must contain {old!r} exactly once for this test to adapt it; found {count}"
        text = text.replace(old, new)
    return text


def render_site(app_port: int, port: int, cache: Path) -> str:
    """deploy/nginx-proxy.conf with its listen lines, upstream and cache directory swapped for the test's."""
    return adapt(SITE, {
        "listen 80;": f"listen 127.0.0.1:{port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{app_port};",
        "proxy_cache_path /var/cache/nginx-syndicator ": f'proxy_cache_path "{cache}" ',
    })


@contextmanager
def nginx_running(site: Path, site_text: str, root: Path, health_url: str) -> Iterator[subprocess.Popen]:
    """nginx in the foreground with `site_text` (checked by `nginx -t` first), until the block ends."""
    binary = nginx_binary(site)
    conf = write_main_config(root, site_text)
    error_log = root / "error.log"
    command = [binary, "-p", f"{root}/", "-e", str(error_log), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    # A warning means nginx read the file differently from what it says (e.g. a duplicate type).
    assert "[warn]" not in checked.stderr, checked.stderr
    with open(root / "nginx.out", "wb") as out:
        proc = subprocess.Popen([*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(health_url, timeout=30, proc=proc, log=error_log)
        yield proc
    finally:
        stop(proc)  # SIGTERM: nginx's fast shutdown, cache manager and loader included


def write_main_config(root: Path, site: str) -> Path:
    """An nginx.conf that keeps pid, logs and temp files under `root` and includes `site` in http{}."""
    (root / "temp").mkdir(parents=True)
    (root / "site.conf").write_text(site, encoding="utf-8")
    # As root, nginx's workers would switch to nobody, who cannot enter pytest's private temp directories.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 1;
pid "{root}/nginx.pid";
error_log "{root}/error.log" info;
events {{ worker_connections 256; }}
http {{
    access_log "{root}/access.log";
    client_body_temp_path "{root}/temp/client_body";
    proxy_temp_path "{root}/temp/proxy";
    fastcgi_temp_path "{root}/temp/fastcgi";
    uwsgi_temp_path "{root}/temp/uwsgi";
    scgi_temp_path "{root}/temp/scgi";
    include "{root}/site.conf";
}}
""", encoding="utf-8")
    return conf


@contextmanager
def run_nginx(app_port: int, root: Path) -> Iterator[str]:
    """nginx in the foreground with the deploy site in front of `app_port`; yields the public base URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}{PREFIX}"
    with nginx_running(SITE, render_site(app_port, port, root / "cache"), root, public + "/healthz"):
        yield public


@dataclass
class Proxied:
    """The app behind nginx: `public` is the reader-facing base URL (prefix included), `app_log` holds
    gunicorn's access log, which tells whether a request reached the app."""

    public: str
    app_log: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        """GET a path of the app through nginx."""
        return fetch(self.public + path, headers)

    def upstream(self, path: str) -> list[int]:
        """Statuses the app logged for GETs of `path` (the app's own path: nginx strips the prefix)."""
        text = self.app_log.read_text(encoding="utf-8", errors="replace")
        return [int(s) for s in re.findall(rf'"GET {re.escape(path)} HTTP/1\.1" (\d{{3}}) ', text)]

    def wait_upstream(self, path: str, count: int, timeout: float = 10) -> list[int]:
        """Poll the access log until the app has logged `count` GETs of `path`; gunicorn writes the line
        just after sending the response, so a reply in hand may not be logged yet."""
        deadline = time.monotonic() + timeout
        while len(seen := self.upstream(path)) < count:
            assert time.monotonic() < deadline, f"the app logged {seen} for {path}, expected {count} requests"
            time.sleep(0.05)
        return seen

    def settle(self) -> None:
        """Send a marker the cache cannot answer and wait until the app has logged it, so requests that
        reached the app before it are logged as well."""
        marker = f"/healthz?settle={uuid.uuid4().hex}"
        assert self.get(marker).status == 200
        self.wait_upstream(marker, 1)


@contextmanager
def proxied_app(content: Path, root: Path, *serve_args: str) -> Iterator[Proxied]:
    """`syndicator serve --trusted-proxies 1` with nginx in front, both torn down on exit."""
    root.mkdir()
    app_log = root / "app.log"
    with serve(content, "--trusted-proxies", "1", *serve_args, log=app_log) as app:
        with run_nginx(urlsplit(app).port, root / "nginx") as public:
            yield Proxied(public, app_log)


@pytest.fixture
def proxied(corpus, tmp_path) -> Iterator[Proxied]:
    """The generated corpus served by two workers behind nginx, with a fresh, empty cache."""
    with proxied_app(corpus, tmp_path / "proxy", "--workers", "2") as p:
        yield p


class _Links(HTMLParser):
    """Collects <link> elements."""

    def __init__(self):
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "link":
            self.links.append(dict(attrs))


def html_links(body: bytes) -> list[dict[str, str | None]]:
    """The attributes of every <link> element in an HTML page."""
    parser = _Links()
    parser.feed(body.decode("utf-8"))
    return parser.links


def self_links(reply: Reply) -> list[str]:
    """The rel="self" links of an RSS or Atom feed, parsed with feedparser."""
    return [link.href for link in parse(reply.body).feed.links if link.rel == "self"]


def test_self_links_are_the_public_url_under_the_prefix(proxied):
    public = proxied.public
    assert public.endswith(PREFIX)

    atom = proxied.get("/feeds/azure.atom")
    assert atom.status == 200
    parsed = parse(atom.body)
    assert [link.href for link in parsed.feed.links if link.rel == "self"] == [public + "/feeds/azure.atom"]
    assert parsed.feed.link == public + "/topics/azure/"
    assert f'<{public}/feeds/azure.atom>; rel="self"' in atom.headers["Link"]
    stylesheet = re.search(rb'<\?xml-stylesheet [^>]*href="([^"]+)"', atom.body)
    assert stylesheet and stylesheet[1].decode() == public + "/static/feed.xsl"
    xsl = fetch(public + "/static/feed.xsl")
    assert xsl.status == 200 and xsl.headers["Content-Type"].startswith("application/xml")

    rss = proxied.get("/feeds/azure.rss")
    parsed = parse(rss.body)
    assert [link.href for link in parsed.feed.links if link.rel == "self"] == [public + "/feeds/azure.rss"]
    assert parsed.feed.link == public + "/topics/azure/"
    assert f'<{public}/feeds/azure.rss>; rel="self"' in rss.headers["Link"]
    assert all(entry.link.startswith("http") for entry in parsed.entries)

    json_feed = json.loads(proxied.get("/feeds/azure.json").body)
    assert json_feed["feed_url"] == public + "/feeds/azure.json"
    assert json_feed["home_page_url"] == public + "/topics/azure/"

    index = proxied.get("/")
    assert index.status == 200
    links = html_links(index.body)
    alternates = [(link["type"], link["href"]) for link in links if link.get("rel") == "alternate"]
    assert alternates[:3] == [
        ("application/rss+xml", public + "/feeds/all.rss"),
        ("application/atom+xml", public + "/feeds/all.atom"),
        ("application/feed+json", public + "/feeds/all.json"),
    ]
    assert len(alternates) > 3 and all(href.startswith(public + "/feeds/all/") for _, href in alternates[3:])
    # Every advertised URL must also work through the proxy, i.e. the prefix round-trips.
    for link in links:
        assert fetch(link["href"]).status == 200, link


def test_readers_cannot_move_the_links_and_hosts_do_not_share_cache_entries(proxied):
    port = urlsplit(proxied.public).port
    spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil", "X-Forwarded-Proto": "https",
               "X-Forwarded-Port": "666"}
    assert self_links(proxied.get(FEED, spoofed)) == [proxied.public + FEED]
    # That filled the cache for 127.0.0.1; another host name must get its own links, not those.
    reply = proxied.get(FEED, {"Host": "feeds.example.org", **spoofed})
    assert reply.headers["X-Cache-Status"] == "MISS"
    assert self_links(reply) == [f"http://feeds.example.org:{port}{PREFIX}{FEED}"]
    # The port in links is the one the reader connected to, not one it claims in Host.
    reply = proxied.get(FEED, {"Host": f"feeds.example.org:{port + 1}"})
    assert reply.headers["X-Cache-Status"] == "HIT"
    assert self_links(reply) == [f"http://feeds.example.org:{port}{PREFIX}{FEED}"]


def test_conditional_get_through_the_proxy(proxied):
    first = proxied.get(FEED)
    assert first.status == 200
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag and last_modified

    again = proxied.get(FEED, {"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    assert again.headers["ETag"] == etag

    zipped = proxied.get(FEED, {"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.headers["ETag"] != etag  # the gzip bytes have their own tag
    assert proxied.get(FEED, {"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}).status == 304
    # A weak comparison, as RFC 9110 asks for If-None-Match.
    assert proxied.get(FEED, {"If-None-Match": f'"nope", W/{etag}'}).status == 304
    assert proxied.get(FEED, {"If-None-Match": '"nope"'}).status == 200

    assert proxied.get(FEED, {"If-Modified-Since": last_modified}).status == 304
    # A later date (e.g. when the reader fetched it) counts too: nginx's if_modified_since before.
    later = format_datetime(dt.datetime.now(dt.timezone.utc), usegmt=True)
    assert proxied.get(FEED, {"If-Modified-Since": later}).status == 304
    earlier = format_datetime(parsedate_to_datetime(last_modified) - dt.timedelta(days=1), usegmt=True)
    assert proxied.get(FEED, {"If-Modified-Since": earlier}).status == 200


def test_gzip_through_the_proxy(proxied):
    plain = proxied.get(FEED)
    assert plain.status == 200 and "Content-Encoding" not in plain.headers

    zipped = proxied.get(FEED, {"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.status == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.body) == plain.body
    parse(gzip.decompress(zipped.body))

    refused = proxied.get(FEED, {"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers and refused.body == plain.body


def test_operations_endpoints_are_refused_on_the_public_server(proxied):
    for path in ("/status", "/metrics"):
        assert proxied.get(path).status == 403, path
        assert proxied.get(path + "?x=1").status == 403, path
        assert not proxied.upstream(path), path  # refused by nginx, whatever the app would say
    assert proxied.get("/healthz").body == b"ok\n"


CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag, Last-Modified, Link"}


def cors_of(reply: Reply) -> dict[str, str]:
    return {name: value for name, value in reply.headers.items() if name.lower().startswith("access-control-")}


def test_cors_headers_pass_through_and_are_cached_with_the_feeds(proxied):
    for path in (FEED, "/feeds/all/archive/1.json", "/topics.opml", "/static/feed.xsl"):
        first = proxied.get(path)
        assert first.status == 200 and cors_of(first) == CORS, path
        hit = proxied.get(path)
        assert hit.headers["X-Cache-Status"] == "HIT" and cors_of(hit) == CORS, path
        # nginx answers this 304 from its cache; browsers check CORS on a 304 too.
        again = proxied.get(path, {"If-None-Match": first.headers["ETag"]})
        assert again.status == 304 and cors_of(again) == CORS, path
    preflight = fetch(proxied.public + FEED, {"Origin": "https://reader.example",
                                              "Access-Control-Request-Method": "GET",
                                              "Access-Control-Request-Headers": "if-none-match"}, method="OPTIONS")
    assert preflight.status == 204 and cors_of(preflight) == {
        **CORS, "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "If-None-Match, If-Modified-Since, Cache-Control",
        "Access-Control-Max-Age": "86400"}
    assert cors_of(proxied.get("/")) == {} and cors_of(proxied.get("/healthz")) == {}


def test_the_cache_answers_repeats_without_asking_the_app(proxied):
    first = proxied.get(FEED, {"Accept-Encoding": "gzip"})
    assert first.headers["X-Cache-Status"] == "MISS"
    assert proxied.wait_upstream(FEED, 1) == [200]

    for _ in range(3):
        repeat = proxied.get(FEED, {"Accept-Encoding": "gzip"})
        assert repeat.headers["X-Cache-Status"] == "HIT"
        assert repeat.body == first.body and repeat.headers["ETag"] == first.headers["ETag"]
    # A reader without gzip is a second variant (Vary: Accept-Encoding): one more trip, then hits too.
    plain = proxied.get(FEED)
    assert plain.headers["X-Cache-Status"] == "MISS" and "Content-Encoding" not in plain.headers
    proxied.wait_upstream(FEED, 2)
    assert proxied.get(FEED).headers["X-Cache-Status"] == "HIT"
    # Other spellings of Accept-Encoding share the gzip variant.
    again = proxied.get(FEED, {"Accept-Encoding": "deflate, gzip;q=0.8, br"})
    assert again.headers["X-Cache-Status"] == "HIT" and again.body == first.body

    proxied.settle()
    assert proxied.upstream(FEED) == [200, 200]


def test_browsers_and_readers_get_their_own_cached_variants(proxied):
    firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    chrome = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
              "application/signed-exchange;v=b3;q=0.7")
    reader = "application/atom+xml, application/rss+xml;q=0.9, application/xml;q=0.8, */*;q=0.5"

    browser = proxied.get(FEED, {"Accept": firefox})
    assert browser.headers["X-Cache-Status"] == "MISS"
    assert browser.headers["Content-Type"].startswith("application/xml")  # so the browser applies the XSL
    feed = proxied.get(FEED, {"Accept": reader})
    assert feed.headers["X-Cache-Status"] == "MISS"
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    assert feed.body == browser.body and feed.headers["ETag"] != browser.headers["ETag"]
    assert proxied.wait_upstream(FEED, 2) == [200, 200]

    # Other spellings land on the same two entries.
    again = proxied.get(FEED, {"Accept": chrome})
    assert again.headers["X-Cache-Status"] == "HIT" and again.headers["Content-Type"].startswith("application/xml")
    for accept in ({"Accept": reader}, {"Accept": "*/*"}, {}):
        again = proxied.get(FEED, accept)
        assert again.headers["X-Cache-Status"] == "HIT", accept
        assert again.headers["Content-Type"].startswith("application/atom+xml"), accept
    proxied.settle()
    assert proxied.upstream(FEED) == [200, 200]


def test_expired_entries_are_revalidated_with_the_apps_validators(corpus, tmp_path):
    # --interval 1 makes the feeds' max-age 1 s, so entries expire while we poll.
    with proxied_app(corpus, tmp_path / "proxy", "--workers", "2", "--interval", "1") as proxied:
        first = proxied.get(FEED)
        assert first.status == 200
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while 304 not in proxied.upstream(FEED):
            assert time.monotonic() < deadline, (
                f"nginx never revalidated {FEED} with the app; cache statuses {seen}, app {proxied.upstream(FEED)}")
            reply = proxied.get(FEED)
            # Readers always get the full, unchanged feed: the 304 is between nginx and the app.
            assert reply.status == 200 and reply.body == first.body and reply.headers["ETag"] == first.headers["ETag"]
            seen.add(reply.headers["X-Cache-Status"])
            time.sleep(0.2)
        assert proxied.upstream(FEED)[0] == 200


def test_gunicorn_conf_sets_only_gunicorn_settings(monkeypatch, tmp_path):
    import runpy

    from gunicorn.config import KNOWN_SETTINGS

    # Given, so that running the file makes no directory and sets nothing in this process's environment.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    known = {setting.name for setting in KNOWN_SETTINGS}
    values = {k: v for k, v in runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py")).items()
              if not k.startswith("_") and not callable(v) and type(v).__name__ != "module"}
    assert set(values) <= known, f"not gunicorn settings: {sorted(set(values) - known)}"
    assert values["worker_class"] == "gthread" and values["workers"] == 2 and values["accesslog"] == "-"
