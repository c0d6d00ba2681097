"""The Flask app: feeds, HTML pages, OPML, health and status. Reads the published Snapshot only."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, abort, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from . import access, documents, entry, feeds, responses
from .config import Settings, check_settings
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .scheduler import Rescanner
from .snapshot import Publisher, Snapshot, Topic
from .websub import Pinger

log = logging.getLogger(__name__)
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
# Item images live on the publishers' hosts, so img-src allows http(s); nothing else leaves the origin.
HTML_CSP = ("default-src 'none'; img-src https: http: data:; style-src 'self'; script-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class AppState:
    """What one app serves from and drives, kept in `app.extensions["syndicator"]`."""

    settings: Settings
    publisher: Publisher  #: holds the snapshot every request reads
    rescanner: Rescanner | None  #: None when the caller gave its own publisher
    pinger: Pinger | None  #: WebSub pings, with hub_url
    metrics: Metrics


def app_state(app: Flask) -> AppState:
    """The state `create_app` gave `app`."""
    return app.extensions["syndicator"]


def _state() -> AppState:
    return app_state(current_app)


def _settings() -> Settings:
    return _state().settings


def current_snapshot() -> Snapshot:
    snapshot = _state().publisher.snapshot
    if snapshot is None:
        abort(503, "the first scan of the content directory has not finished yet")
    return snapshot


def public_base() -> str:
    """The public root URL: the configured base_url, else the request's (via trusted proxy headers)."""
    settings = _settings()
    if settings.base_url:
        return settings.base_url
    if not _HOST.match(request.host):
        abort(400, "invalid Host header")
    return (request.host_url.rstrip("/") + request.script_root).rstrip("/")


def current_site() -> documents.Site:
    settings = _settings()
    return documents.Site.of(settings, public_base())


def send_document(doc: documents.Document) -> Response:
    """A response with validators, caching, gzip when accepted, and 304 when the client is current."""
    status, headers, body = responses.respond(doc, request.headers.get)
    response = Response(body, status=status, headers=headers)
    if status == 304:
        response.headers.pop("Content-Type", None)
    return response


# The request headers responses.respond() reads, by their WSGI environ keys.
_ENVIRON_KEYS = {name: "HTTP_" + name.upper().replace("-", "_")
                 for name in ("Accept", "Accept-Encoding", "If-None-Match", "If-Modified-Since")}


class FeedFastPath:
    """WSGI middleware: GET/HEAD of a subscription feed answered straight from the snapshot.

    Flask's routing and request objects cost more than the whole answer (a dict lookup and precomputed
    headers); everything else, including any feed URL with a query string, goes on to Flask.
    """

    def __init__(self, app, settings: Settings, publisher: Publisher, metrics: Metrics):
        self.app = app
        self.settings = settings
        self.publisher = publisher
        self.metrics = metrics
        self._sites: dict[tuple[str, str, str], documents.Site] = {}

    def _site(self, environ) -> documents.Site | None:
        s = self.settings
        if s.base_url:
            key = ("", "", "")
        else:
            host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
            key = (environ.get("wsgi.url_scheme", "http"), host, environ.get("SCRIPT_NAME", "").rstrip("/"))
        site = self._sites.get(key)  # only valid hosts are kept
        if site is None:
            if not s.base_url and not _HOST.match(key[1]):
                return None  # Flask answers it with a 400
            base = s.base_url or f"{key[0]}://{key[1]}{key[2]}"
            site = documents.Site.of(s, base)
            if len(self._sites) < 64:  # bounded: Host headers are chosen by clients
                self._sites[key] = site
        return site

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        snapshot = self.publisher.snapshot
        if (path.startswith("/feeds/") and method in ("GET", "HEAD") and not environ.get("QUERY_STRING")
                and snapshot is not None):
            slug, dot, fmt = path[7:].rpartition(".")
            site = self._site(environ) if dot and "/" not in slug and fmt in feeds.FORMATS else None
            doc = documents.feed_document(snapshot, site, slug, fmt) if site is not None else None
            if doc is not None:
                status, headers, body = responses.respond(doc, lambda name: environ.get(_ENVIRON_KEYS[name]))
                start_response("200 OK" if status == 200 else "304 Not Modified", headers)
                self.metrics.count("feed", status)
                return [body] if method == "GET" and status == 200 else []
        return self.app(environ, start_response)


def _limit_param() -> int | None:
    raw = request.args.get("limit")
    if raw is None:
        return None
    maximum = _settings().feed_limit
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        abort(400, f"limit must be a whole number from 1 to {maximum}, got {raw[:40]!r}")
    number = int(raw)
    return None if number == maximum else number  # the canonical document stays the cached one


def create_app(settings: Settings, *, publisher: Publisher | None = None, scan: bool = True,
               schedule: bool = False, metrics_dir: str | None = None) -> Flask:
    """Build the app. Without a `publisher`, one is made and filled by a first scan (when `scan`);
    `schedule` starts the periodic rescan in this process; `metrics_dir` is the server's directory that
    makes /metrics count every worker (metrics.private_directory)."""
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False
    # Stylesheet and script change only with a release; let proxies and browsers keep them a while.
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 3600
    check_settings(settings)
    rescanner = pinger = None
    if publisher is None:
        publisher = Publisher()
        site = None
        if settings.base_url:
            site = documents.Site.of(settings)
        if settings.hub_url and site is not None:  # check_settings: a hub needs base_url
            pinger = Pinger(settings.hub_url, site)
        rescanner = Rescanner(settings, publisher, site=site, on_publish=pinger.on_publish if pinger else None)
        if scan:
            rescanner.run_once()
            # Servers fork their workers next. The cache is written before that, not by the master once
            # they run: pickling touches every object's reference count, so the master would copy
            # the pages it shares with the workers (docs/design.md).
            rescanner.flush()
        if schedule:
            rescanner.start()
    metrics = Metrics(publisher, metrics_dir)
    app.wsgi_app = FeedFastPath(app.wsgi_app, settings, publisher, metrics)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # The client's address counts even with base_url: the operations endpoints judge it, and behind
        # a proxy REMOTE_ADDR is the proxy's. The URL headers only when base_url does not pin the links.
        n = settings.trusted_proxies
        u = 0 if settings.base_url else n
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=u, x_host=u,  # type: ignore[method-assign]
                                x_port=u, x_prefix=u)
    app.extensions["syndicator"] = AppState(settings, publisher, rescanner, pinger, metrics)
    _routes(app)
    return app


def _routes(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        route = request.url_rule.endpoint if request.url_rule is not None else "other"
        _state().metrics.count(route, response.status_code)
        if access.is_cors_path(request.path):
            # Documents bring their own; this covers preflights, errors and redirects of the same URLs.
            preflight = request.method == "OPTIONS" and response.status_code == 200
            for name, value in access.PREFLIGHT_HEADERS if preflight else documents.CORS_HEADERS:
                response.headers.setdefault(name, value)
            if preflight:  # Flask's automatic answer, which has no body to type
                response.status_code = 204
                del response.headers["Content-Type"]
                return response
        if response.status_code == 304:
            return response  # only what updates the cached copy (see responses.respond)
        for name, value in responses.SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", HTML_CSP)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # Plain text, no traceback, no echo of anything but what we chose to say.
        response = Response(f"{exc.code} {exc.name}: {exc.description}\n", status=exc.code,
                            content_type="text/plain; charset=utf-8")
        allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
        if exc.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        if exc.code == 404:  # a topic may appear with the next rescan, not sooner
            response.headers["Cache-Control"] = f"public, max-age={_settings().interval}"
        return response

    @app.errorhandler(Exception)
    def _server_error(exc: Exception):
        log.exception("error serving %s", request.path)
        return Response("500 Internal Server Error\n", status=500, content_type="text/plain; charset=utf-8")

    @app.get("/feeds/<slug>.<fmt>")
    def feed(slug: str, fmt: str):
        return _feed(slug, fmt, None)

    @app.get("/feeds/<slug>/archive/<int:page>.<fmt>")
    def archive(slug: str, page: int, fmt: str):
        return _feed(slug, fmt, page)

    @app.get("/feeds/<slug>/<kind>.<fmt>")
    def kind_feed(slug: str, kind: str, fmt: str):
        return _feed(slug, fmt, None, kind)

    @app.get("/feeds/<slug>/<kind>/archive/<int:page>.<fmt>")
    def kind_archive(slug: str, kind: str, page: int, fmt: str):
        return _feed(slug, fmt, page, kind)

    def _feed(slug: str, fmt: str, page: int | None, kind: str | None = None):
        if fmt not in feeds.FORMATS:
            abort(404, f"unknown feed format {fmt[:20]!r}; use .rss, .atom or .json")
        snapshot = current_snapshot()
        limit = _limit_param() if page is None else None
        doc = documents.feed_document(snapshot, current_site(), slug, fmt, page, limit, kind)
        if doc is None:
            if slug != "all" and slug not in snapshot.topics:
                _redirect_renamed(snapshot, slug)
                abort(404, f"unknown topic {slug[:80]!r}")
            if kind is not None and kind not in documents.kinds(snapshot, slug):
                abort(404, f"topic {slug!r} has no items of kind {kind[:40]!r}")
            abort(404, f"topic {slug!r} has no archive page {page}")
        return send_document(doc)

    def _redirect_renamed(snapshot: Snapshot, slug: str) -> None:
        """A renamed topic's former slug answers every one of its URLs with a 301 to the new one, so that
        subscribers follow it (feed readers update a permanently redirected subscription)."""
        new = snapshot.aliases.get(slug)
        if new is not None:
            path = request.path
            at = path.index(f"/{slug}", len("/feeds") if path.startswith("/feeds/") else len("/topics"))
            target = public_base() + path[:at] + f"/{new}" + path[at + len(slug) + 1:]
            query = request.query_string.decode("latin-1")
            abort(Response(status=301, headers={"Location": target + (f"?{query}" if query else ""),
                                                "Cache-Control": f"public, max-age={_settings().interval}"}))

    @app.get("/")
    def index():
        snapshot = current_snapshot()
        return _page("index.html", snapshot, topics=list(snapshot.topics.values()),
                     kinds=documents.kinds(snapshot, "all"))

    @app.get("/topics/<slug>/")
    def topic_page(slug: str):
        snapshot = current_snapshot()
        topic = snapshot.topics.get(slug)
        if topic is None:
            _redirect_renamed(snapshot, slug)
            abort(404, f"unknown topic {slug[:80]!r}")
        up, ancestors = topic.parent, list[Topic]()
        while up:
            ancestors.insert(0, snapshot.topics[up])
            up = snapshot.topics[up].parent
        return _page("topic.html", snapshot, topic=topic, items=topic.items[:_settings().feed_limit],
                     kinds=documents.kinds(snapshot, slug), ancestors=ancestors,
                     subtopics=[snapshot.topics[child] for child in topic.children])

    def _page(template: str, snapshot: Snapshot, **context) -> Response:
        site = current_site()
        key = documents.PageKey(site, template, context["topic"].slug if context.get("topic") else None)

        def make() -> documents.Document:
            body = render_template(template, site=site, snapshot=snapshot, kind_label=documents.kind_label,
                                   duration_text=entry.duration_text, watch_text=entry.watch_text,
                                   download_text=entry.download_text, related=entry.related,
                                   **context).encode("utf-8")
            return documents.make_document(body, "text/html; charset=utf-8", snapshot.newest, site.interval)

        return send_document(documents.memoized(snapshot, key, make))

    @app.get("/topics.opml")
    def opml():
        return send_document(documents.opml_document(current_snapshot(), current_site()))

    xsl_file = Path(__file__).parent / "static" / "feed.xsl"
    # Served with an XML type (browsers refuse XSL otherwise); read once, it only changes with a release.
    xsl = documents.make_document(xsl_file.read_bytes(), "application/xml; charset=utf-8",
                                  dt.datetime.fromtimestamp(xsl_file.stat().st_mtime, dt.timezone.utc), 3600,
                                  cors=True)

    @app.get("/static/feed.xsl")
    def stylesheet():
        return send_document(xsl)

    def _operator() -> bool:
        return access.is_operator(_settings().ops_networks, request.remote_addr)

    def _operators_only(path: str) -> None:
        # File paths, problem reasons and traffic are the operator's business only.
        if not _operator():
            abort(403, f"{path} answers only clients in ops_networks; this request came from "
                       f"{(request.remote_addr or 'an unknown address')[:60]}")

    @app.get("/metrics")
    def metrics():
        _operators_only("/metrics")
        return Response(_state().metrics.render(), content_type=METRICS_CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    def healthz():
        publisher = _state().publisher
        if publisher.snapshot is None:
            return Response("starting: no snapshot yet\n", status=503, content_type="text/plain; charset=utf-8")
        health = publisher.health
        # Monitors anywhere may learn whether feeds are fresh; why not (paths, errors) is the operator's.
        text = "ok\n" if health.ok else f"degraded: {health.message}\n" if _operator() else "degraded\n"
        return Response(text, content_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    @app.get("/status")
    def status():
        _operators_only("/status")
        publisher = _state().publisher
        snapshot = publisher.snapshot
        health = publisher.health
        body = {
            "healthy": health.ok,
            "degraded": None if health.ok else health.message,
            "last_scan": publisher.last_scan.isoformat() if publisher.last_scan else None,
            "scan_seconds": round(publisher.scan_seconds, 4),
            "items": len(snapshot.all_items) if snapshot else 0,
            "topics": [] if snapshot is None else [
                {"slug": t.slug, "name": t.name, "items": len(t.items), "parent": t.parent or None,
                 "kinds": [{"kind": kind, "items": n} for kind, n in documents.kind_counts(snapshot, t.slug)]}
                for t in snapshot.topics.values()],
            "problems": [{"path": p.path, "reason": p.reason, "stale": p.stale}
                         for p in (snapshot.problems if snapshot else ())],
        }
        response = app.json.response(body)
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.headers["Cache-Control"] = "no-store"
        return response
