"""Hostile requests and hostile content: clean 4xx, no tracebacks, nothing outside the content directory,
no script in our pages or feeds. Plus /metrics for operators."""

from __future__ import annotations

import http.client
import os

import pytest
from helpers import parse, serve, served_files, write_item


@pytest.mark.parametrize("path", [
    "/feeds/../../etc/passwd.rss", "/feeds/..%2F..%2Fetc%2Fpasswd.rss", "/feeds/%2e%2e/secret.rss",
    "/feeds/azure%00.rss", "/feeds/azure.rss%00", "/topics/..%2f..%2f/", "/feeds/azure/archive/-1.rss",
    "/feeds/azure/archive/99999999999999999999.rss", "/static/../cli.py", "/static/..%2fcli.py",
    "/feeds/" + "a" * 5000 + ".rss", "/feeds/azure.rss/", "/%ff%fe", "/feeds/\u202e.rss",
])
def test_path_games_get_a_clean_4xx(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "root:" not in body and "import" not in body


@pytest.mark.parametrize("query", ["limit=-1", "limit=1e3", "limit=" + "9" * 400, "limit=%00", "limit="])
def test_bad_query_values_get_a_400_that_says_what_is_allowed(client, query):
    response = client.get("/feeds/azure.rss?" + query)
    assert response.status_code == 400 and b"limit must be a whole number from 1 to 50" in response.data


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"])
def test_odd_methods_are_405_everywhere(client, method):
    for path in ("/feeds/azure.rss", "/", "/status"):
        response = client.open(path, method=method)
        assert response.status_code == 405 and "GET" in response.headers["Allow"]


@pytest.mark.parametrize("host", ["evil.example/<x>", "a b", "x" * 300 + ".example:99999999", "[::1", "é.example"])
def test_host_header_games_are_refused(client, host):
    response = client.get("/feeds/azure.atom", headers={"Host": host})
    assert response.status_code == 400 and b"Traceback" not in response.data


def test_oversized_urls_and_headers_over_real_http(corpus):
    with serve(corpus) as base:
        host, port = base.removeprefix("http://").split(":")

        def request(path: str, headers: dict | None = None) -> int:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                conn.request("GET", path, headers=headers or {})
                return conn.getresponse().status
            except (ConnectionError, http.client.HTTPException):
                return 400  # the server closed the connection on an oversized request line
            finally:
                conn.close()

        assert request("/feeds/" + "a" * 10_000 + ".rss") in (400, 404, 414)
        assert request("/feeds/azure.rss", {"X-Big": "y" * 20_000}) in (400, 431)
        assert request("/feeds/azure.rss") == 200  # and the server is still fine afterwards


def test_symlinked_files_outside_the_content_are_never_served(tmp_path, make_app):
    secret = tmp_path / "secret"
    write_item(secret, "s.md", title="TOP SECRET", publishedDateTime="2024-01-01T00:00:00Z",
               webUrl="https://x.org/secret", topics=["Azure"])
    content = tmp_path / "content"
    write_item(content / "news", "a.md", title="Public", publishedDateTime="2024-01-01T00:00:00Z",
               webUrl="https://x.org/public", topics=["Azure"])
    os.symlink(secret / "s.md", content / "news" / "s.md")
    os.symlink(secret, content / "more")
    client = make_app(content).test_client()
    for path in ("/feeds/all.rss", "/feeds/azure.atom", "/", "/topics/azure/", "/status"):
        assert b"TOP SECRET" not in client.get(path).data


def test_script_and_javascript_urls_never_execute_or_reach_feeds_unescaped(tmp_path, make_app):
    write_item(tmp_path / "news", "x.md", title='<script>alert("t")</script>', excerpt="<img src=x onerror=alert(1)>",
               publishedDateTime="2024-01-01T00:00:00Z", webUrl="https://x.org/a", topics=["Azure"],
               images=[{"url": "javascript:alert(1)"}, {"url": "https://img.example/ok.png"}],
               related=[{"title": "r", "webUrl": "javascript:alert(1)"}, {"title": "ok", "webUrl": "https://x.org/r"}],
               body="<script>alert(2)</script><a href='javascript:alert(3)'>x</a><p onclick='alert(4)'>p</p>")
    client = make_app(tmp_path).test_client()
    for path in ("/", "/topics/azure/"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html and "javascript:" not in html
    import json

    from lxml import html as lxml_html

    for fmt in ("rss", "atom", "json"):
        body = client.get(f"/feeds/azure.{fmt}").data
        assert b"javascript:" not in body
        if fmt == "json":
            entry_html = json.loads(body)["items"][0]["content_html"]  # the title is plain text in JSON
        else:
            assert b"<script>" not in body  # XML escapes it
            entry_html = parse(body).entries[0].content[0].value
        # The entry HTML may mention "<script>" as text; as markup it holds no script and no handler.
        tree = lxml_html.fromstring(entry_html)
        assert not tree.xpath("//script | //iframe | //*[@*[starts-with(name(), 'on')]]")
        assert all(href.startswith("https://") for href in tree.xpath("//@href | //@src"))


def test_metrics_count_requests_and_report_the_scan(client, corpus):
    client.get("/feeds/azure.rss")
    etag = client.get("/feeds/azure.rss").headers["ETag"]
    client.get("/feeds/azure.rss", headers={"If-None-Match": etag})
    client.get("/feeds/missing.rss")
    client.get("/")
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))): s.value
               for family in text_string_to_metric_families(response.get_data(as_text=True))
               for s in family.samples}
    assert samples[("syndicator_http_requests_total", (("route", "feed"), ("status", "200")))] == 2
    assert samples[("syndicator_http_requests_total", (("route", "feed"), ("status", "304")))] == 1
    assert samples[("syndicator_http_requests_total", (("route", "feed"), ("status", "404")))] == 1
    assert samples[("syndicator_http_requests_total", (("route", "index"), ("status", "200")))] == 1
    assert samples[("syndicator_items", ())] == served_files(corpus) and samples[("syndicator_topics", ())] == 8
    assert samples[("syndicator_problems", ())] == 0 and samples[("syndicator_healthy", ())] == 1
    assert samples[("syndicator_last_successful_scan_timestamp_seconds", ())] > 1.7e9
