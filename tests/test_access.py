"""Who may read what (issue 17, points 4 and 5): the operations endpoints answer only `ops_networks`, judged
on the real client address, over real HTTP from an allowed and a refused loopback address; feeds, archives,
OPML and the XSL carry CORS headers (200, 304, errors, preflights) and nothing operational does.

The browser's side of CORS is in test_browser.py, nginx's in test_nginx.py and test_nginx_static.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import Reply, fetch, poll, serve

from syndicator.config import ConfigError, Settings, load_settings

ALLOWED, REFUSED = "127.0.0.1", "127.0.0.2"  # both loopback: Linux routes all of 127.0.0.0/8 to lo
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag, Last-Modified, Link"}
PREFLIGHT = {**CORS, "Access-Control-Allow-Methods": "GET, HEAD",
             "Access-Control-Allow-Headers": "If-None-Match, If-Modified-Since, Cache-Control",
             "Access-Control-Max-Age": "86400"}
PUBLIC_DOCUMENTS = ["/feeds/azure.rss", "/feeds/all.json", "/feeds/all/archive/1.atom", "/feeds/all/article.rss",
                    "/feeds/azure.atom?limit=2", "/topics.opml", "/static/feed.xsl"]
OPERATIONS = ["/status", "/metrics", "/healthz"]


def request(url: str, source: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
    """One request from the local address `source`, on a fresh connection with exactly these headers."""
    return fetch(url, headers, method, source=source, timeout=10)


def cors_of(headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower().startswith("access-control-")}


def test_over_real_http_the_operations_endpoints_answer_only_ops_networks(corpus, tmp_path):
    with serve(corpus, "--ops-networks", f"{ALLOWED}/32", "--workers", "1", "--interval", "1") as base:
        status = request(base + "/status", ALLOWED)
        assert status.status == 200 and json.loads(status.body)["items"] > 0
        assert request(base + "/metrics", ALLOWED).status == 200
        assert request(base + "/healthz", ALLOWED).body == b"ok\n"
        for path in ("/status", "/metrics"):
            refused = request(base + path, REFUSED)
            assert refused.status == 403, path
            assert refused.body.decode() == (f"403 Forbidden: {path} answers only clients in ops_networks; "
                                             f"this request came from {REFUSED}\n")
            # Without trusted proxies a client's X-Forwarded-For is its own say-so, not its address.
            assert request(base + path, REFUSED, {"X-Forwarded-For": ALLOWED}).status == 403, path
        assert request(base + "/healthz", REFUSED).body == b"ok\n"
        # Everything public stays public.
        for path in ("/", "/topics/azure/", *PUBLIC_DOCUMENTS):
            assert request(base + path, REFUSED).status == 200, path

        # A failed rescan: everyone may learn that the feeds are stale; only the operator why.
        shutil.move(corpus, tmp_path / "gone")
        degraded = poll(lambda: (request(base + "/healthz", ALLOWED).body.startswith(b"degraded: "),
                                 request(base + "/healthz", ALLOWED).body), 30, "healthz degraded")
        assert str(corpus) in degraded.decode()
        refused = request(base + "/healthz", REFUSED)
        assert refused.status == 200 and refused.body == b"degraded\n"


def test_behind_a_trusted_proxy_the_forwarded_client_is_judged_not_the_proxy(corpus):
    # base_url pins the links, yet the client's address must still come from the proxy's header.
    with serve(corpus, "--ops-networks", f"{ALLOWED}/32", "--trusted-proxies", "1", "--workers", "1",
               "--base-url", "https://feeds.example.org") as base:
        assert request(base + "/status", ALLOWED).status == 200  # the operator on the machine, no proxy
        assert request(base + "/status", ALLOWED, {"X-Forwarded-For": ALLOWED}).status == 200
        # A reader elsewhere, as nginx forwards it: refused although the proxy's own address is allowed.
        assert request(base + "/status", ALLOWED, {"X-Forwarded-For": "203.0.113.7"}).status == 403
        # A reader that claims to be the operator: nginx appends the address it saw, which is the one judged.
        spoofed = {"X-Forwarded-For": f"{ALLOWED}, 203.0.113.7"}
        assert request(base + "/status", ALLOWED, spoofed).status == 403
        assert request(base + "/metrics", ALLOWED, spoofed).status == 403
        assert request(base + "/status", REFUSED).status == 403


@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("203.0.113.5", False), ("2001:db8::1", False), ("", False), ("not-an-ip", False),
])
def test_by_default_only_loopback_is_the_operator(corpus, make_app, address, allowed):
    """A local start works as before; a server reached from elsewhere keeps its paths and errors to itself."""
    client = make_app(corpus).test_client()
    for path in ("/status", "/metrics"):
        assert client.get(path, environ_base={"REMOTE_ADDR": address}).status_code == (200 if allowed else 403)


def test_networks_setting_is_checked_and_normalised(corpus, make_app):
    assert Settings().ops_networks == "127.0.0.0/8, ::1/128"
    assert load_settings(env={"SYNDICATOR_OPS_NETWORKS": "10.0.0.1 192.168.0.0/16,fd00::/8"}).ops_networks == (
        "10.0.0.1/32, 192.168.0.0/16, fd00::/8")
    for wrong in ("10.1.2.3/8", "example.org", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="environment SYNDICATOR_OPS_NETWORKS: ops_networks must be IP "
                                              "addresses or networks"):
            load_settings(env={"SYNDICATOR_OPS_NETWORKS": wrong})
    with pytest.raises(ConfigError, match="ops_networks must be"):
        make_app(corpus, ops_networks="localhost")
    anyone = make_app(corpus, ops_networks="0.0.0.0/0, ::/0").test_client()
    assert anyone.get("/status", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
    nobody = make_app(corpus, ops_networks="").test_client()
    assert nobody.get("/status").status_code == 403


def test_cors_on_public_documents_and_their_304s_errors_and_preflights(client):
    for path in PUBLIC_DOCUMENTS:
        full = client.get(path)
        assert full.status_code == 200 and cors_of(full.headers) == CORS, path
        again = client.get(path, headers={"If-None-Match": full.headers["ETag"]})
        assert again.status_code == 304 and cors_of(again.headers) == CORS, path
        preflight = client.options(path, headers={"Origin": "https://reader.example", "Access-Control-Request-Method":
                                                  "GET", "Access-Control-Request-Headers": "if-none-match"})
        assert preflight.status_code == 204 and preflight.data == b"", path
        assert cors_of(preflight.headers) == PREFLIGHT and "Content-Type" not in preflight.headers, path
    # A script must be able to tell a missing feed (and a bad query) from a network error.
    for path in ("/feeds/no-such-topic.rss", "/feeds/azure/archive/99.rss", "/feeds/azure.atom?limit=0"):
        error = client.get(path)
        assert error.status_code in (400, 404) and cors_of(error.headers) == CORS, path


def test_a_renamed_topics_redirect_allows_cors_so_browsers_follow_it(tmp_path, make_app):
    from helpers import write_item

    (tmp_path / "topics").mkdir(parents=True)
    (tmp_path / "topics" / "k8s.yaml").write_text("_id: k8s\nname: Kubernetes\naliases: [kube]\n", encoding="utf-8")
    write_item(tmp_path / "news", "a.md", title="A story", webUrl="https://example.org/a", topics=["Kubernetes"],
               publishedDateTime="2024-01-01T00:00:00Z")
    moved = make_app(tmp_path).test_client().get("/feeds/kube.json")
    assert moved.status_code == 301 and moved.headers["Location"].endswith("/feeds/k8s.json")
    assert cors_of(moved.headers) == CORS


def test_pages_and_operations_get_no_cors(client):
    for path in ("/", "/topics/azure/", "/static/style.css", *OPERATIONS):
        response = client.get(path)
        assert response.status_code == 200 and cors_of(response.headers) == {}, path
        preflight = client.options(path, headers={"Origin": "https://reader.example",
                                                  "Access-Control-Request-Method": "GET"})
        assert cors_of(preflight.headers) == {}, path
