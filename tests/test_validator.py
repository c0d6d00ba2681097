"""Every RSS and Atom feed the service offers passes the W3C Feed Validation Service (tools/feedvalidator).

The feeds are found the way a reader finds them, not from a list kept here: the autodiscovery links
(`<link rel="alternate">`) and feed links of the index page and of every topic page, the OPML's outlines,
and the links inside the feeds themselves (RFC 5005 `prev-archive`, `next-archive`, `current`), followed
until nothing new turns up. A feed kind added later is covered as soon as a page or a feed links to it.
This runs twice: over real HTTP against `syndicator serve` (the validator fetches the URL, so it checks
the headers too) and on the files `syndicator build` writes.

One subprocess imports the validator library once, as tools/feedvalidator/fvcheck.py does, validates
every feed of a run and writes a JSON report (this file is that subprocess's program too, see `worker`).
Any ERROR fails the test; so does any WARNING not in ALLOWED_WARNINGS below.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
from helpers import ROOT, SYNDICATOR, generate, http_get, serve

FVCHECK = ROOT / "tools" / "feedvalidator" / "fvcheck.py"
FEED_LIMIT = 10  # small, so that topics have no archive page, one, or several
SITE_URL = "https://news.example.org"  # root-relative links in the content (provider logos) resolve here
BUILD_BASE = "https://feeds.example.org/news"  # a public URL with a path prefix, as behind a proxy
HUB = "https://hub.example.org/"  # advertised only: a single build pings nobody (nothing changed)
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml"})  # what this test validates; not JSON Feed
# What deploy/nginx-static.conf serves the exported files as (types and charset blocks).
FILE_CONTENT_TYPES = {".rss": "application/rss+xml; charset=utf-8", ".atom": "application/atom+xml; charset=utf-8"}

# (validator check, element) -> why the warning stays. Only for what publishers wrote or validator quirks;
# never for our own markup.
ALLOWED_WARNINGS: dict[tuple[str, str], str] = {
    ("ArchiveIncomplete", "feed"): "validator quirk: a topic's only archive page has no prev-archive or next-archive "
    "because there is no other archive (RFC 5005 section 4); fh:complete, which it suggests instead, means a "
    "complete feed and would be wrong on an archive page",
}


# ----------------------------------------------------------------------------------------------- corpus


@pytest.fixture(scope="module")
def content(tmp_path_factory) -> Path:
    """At FEED_LIMIT, topics with no archive page, with exactly one and with several (`all` has two dozen),
    with the generator's publisher text (entities, mojibake, markup in titles) and a few hostile files."""
    return generate(tmp_path_factory.mktemp("fv-corpus") / "c", items=240, topics=12, bad=0.02)


COMMON = ("--feed-limit", str(FEED_LIMIT), "--site-url", SITE_URL)


# -------------------------------------------------------------------------------------------- discovery


class _Links(HTMLParser):
    """(tag, attributes) of every <link> and <a> of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("link", "a"):
            self.found.append((tag, {k: v or "" for k, v in attrs}))


def _is_feed(url: str, type_: str = "") -> bool:
    return type_.split(";")[0].strip() in FEED_TYPES or urldefrag(url)[0].endswith((".rss", ".atom"))


def _html_links(page_url: str, body: bytes) -> list[tuple[str, dict[str, str]]]:
    parser = _Links()
    parser.feed(body.decode("utf-8"))
    return [(tag, {**attrs, "href": urljoin(page_url, attrs["href"])}) for tag, attrs in parser.found
            if attrs.get("href")]


def discover(base: str, fetch, topic_slugs: tuple[str, ...] = ()) -> dict[str, str]:
    """Every RSS and Atom URL under `base` that the pages, the OPML and the feeds link to, mapped to where
    it was first seen. `fetch(url) -> bytes`; `topic_slugs` adds topic pages besides the index's links."""
    from lxml import etree

    inside = base + "/"
    pages = [inside] + [f"{base}/topics/{slug}/" for slug in topic_slugs]
    found: dict[str, str] = {}
    queue: list[str] = []  # feeds found but not yet read for their links

    def add(url: str, type_: str, where: str) -> None:
        url = urldefrag(url)[0]
        if url not in found and url.startswith(inside) and _is_feed(url, type_):
            found[url] = where
            queue.append(url)

    for tag, attrs in _html_links(inside, fetch(inside)):
        if tag == "a" and attrs["href"].startswith(f"{base}/topics/") and attrs["href"].endswith("/"):
            pages.append(attrs["href"])
    for page in dict.fromkeys(pages):
        for tag, attrs in _html_links(page, fetch(page)):
            rels = attrs.get("rel", "").split()
            if tag == "a" or "alternate" in rels:
                add(attrs["href"], attrs.get("type", ""), f"{'<a>' if tag == 'a' else 'autodiscovery'} on {page}")
    opml = etree.fromstring(fetch(f"{base}/topics.opml"))
    for outline in opml.iter("outline"):
        if outline.get("xmlUrl"):
            add(urljoin(inside, outline.get("xmlUrl")), "", "topics.opml")
    while queue:  # feeds link to their archive pages and back (RFC 5005), and perhaps to other feeds
        url = queue.pop()
        for element in etree.fromstring(fetch(url)).iter():
            if isinstance(element.tag, str) and etree.QName(element).localname == "link" and element.get("href"):
                add(urljoin(url, element.get("href")), element.get("type", ""),
                    f"rel={element.get('rel', 'alternate')} in {url}")
    return found


def http_fetch(url: str) -> bytes:
    status, _head, body = http_get(url)
    assert status == 200, f"{url} is linked but answers {status}: {body[:200]!r}"
    return body


def file_fetcher(out: Path, base: str):
    """fetch() over an export: the file a static server would send for `url`."""
    def fetch(url: str) -> bytes:
        rel = url.removeprefix(base + "/").split("?")[0]
        path = out / (rel + "index.html" if rel == "" or rel.endswith("/") else rel)
        assert path.is_file(), f"{url} is linked but the build wrote no {path.relative_to(out)}"
        return path.read_bytes()
    return fetch


def archive_pages(found, base: str, slug: str, fmt: str) -> set[int]:
    prefix, suffix = f"{base}/feeds/{slug}/archive/", f".{fmt}"
    return {int(u[len(prefix):-len(suffix)]) for u in found
            if u.startswith(prefix) and u.endswith(suffix) and u[len(prefix):-len(suffix)].isdigit()}


# ------------------------------------------------------------------------------------ the validator run


def worker(jobs_file: str, report_file: str) -> None:
    """In a subprocess: validate every job (a URL, or a file with the Content-Type it would be served
    with) exactly as fvcheck.py does, and write each feed's events (errors, warnings, info) as JSON."""
    import importlib.util
    import io
    import traceback

    spec = importlib.util.spec_from_file_location("fvcheck", FVCHECK)
    assert spec is not None and spec.loader is not None
    fvcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fvcheck)  # puts fv/src on sys.path and imports the library, as the command does
    from feedvalidator import compatibility
    from feedvalidator.formatter.text_plain import Formatter
    from feedvalidator.logging import ValidationFailure

    results = []
    for job in json.loads(Path(jobs_file).read_text()):
        target, raw, fatal, crash = job["target"], "", False, ""
        try:
            if target.startswith(("http://", "https://")):
                res = fvcheck.feedvalidator.validateURL(target, firstOccurrenceOnly=1, wantRawData=1)
                raw = res.get("rawdata") or ""
            else:
                data = Path(target).read_bytes()
                match = fvcheck.SELF_RE.search(data[:65536])  # fvcheck's default location: the self link
                base = match.group(1).decode("utf-8", "replace") if match else Path(target).as_uri()
                res = fvcheck.feedvalidator.validateStream(io.BytesIO(data), firstOccurrenceOnly=1,
                                                           contentType=job.get("content_type"), base=base)
                raw = data.decode("utf-8", "replace")
            events, feed_type = res["loggedEvents"], res.get("feedType")
        except ValidationFailure as failure:
            events, feed_type, fatal = [failure.event], None, True
        except Exception:  # the validator itself broke on this feed
            events, feed_type, crash = [], None, traceback.format_exc()
        events = compatibility.AAA(events)
        formatter = Formatter(events)
        lines = raw.split("\n")
        found = []
        for event in events:
            line, column = event.params.get("line", 0), event.params.get("column", 0)
            text = lines[line - 1] if 0 < line <= len(lines) else ""
            found.append({
                "severity": fvcheck.severity(event), "check": type(event).__name__,
                "element": str(event.params.get("element", "")), "line": line, "column": column,
                "count": event.params.get("msgcount", 1), "message": formatter.format(event),
                "excerpt": text[max(0, column - 100):column + 60],
            })
        results.append({"target": target, "where": job.get("where", ""), "feed_type": feed_type,
                        "fatal": fatal, "crash": crash, "events": found})
    Path(report_file).write_text(json.dumps(results, indent=1))


def validate(jobs: list[dict], scratch: Path, processes: int = 2) -> list[dict]:
    """Run the worker over `jobs`, split across `processes` subprocesses; their reports, in job order."""
    chunks = [jobs[i::processes] for i in range(processes) if jobs[i::processes]]
    procs = []
    for n, chunk in enumerate(chunks):
        jobs_file, report = scratch / f"fv-jobs-{n}.json", scratch / f"fv-report-{n}.json"
        jobs_file.write_text(json.dumps(chunk))
        log = open(scratch / f"fv-worker-{n}.log", "wb")
        procs.append((subprocess.Popen([sys.executable, __file__, str(jobs_file), str(report)], cwd=ROOT,
                                       stdout=log, stderr=subprocess.STDOUT), report, log))
    results = []
    for proc, report, log in procs:
        proc.wait(timeout=600)
        log.close()
        output = Path(log.name).read_text(errors="replace")
        assert proc.returncode == 0 and report.exists(), f"validator worker failed ({proc.returncode}):\n{output}"
        results += json.loads(report.read_text())
    order = {job["target"]: i for i, job in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r["target"]])


def judge(results: list[dict], label: str, show=lambda target: target) -> None:
    """Fail on any error (or validator failure) and on any warning not allowed; print everything found."""
    by_check: dict[tuple[str, str, str], list[tuple[str, dict]]] = defaultdict(list)
    problems = []
    for result in results:
        where = show(result["target"])
        # 2 and 3 are the validator's numbers for RSS 0.9x/2.0 and Atom 1.0
        assert result["feed_type"] in (2, 3) or result["fatal"] or result["crash"], \
            f"{where} is neither RSS 2.0 nor Atom 1.0 to the validator (type {result['feed_type']})"
        if result["crash"]:
            problems.append(f"{where}: the validator crashed:\n{result['crash']}")
        for event in result["events"]:
            by_check[(event["severity"], event["check"], event["element"])].append((where, event))
            detail = (f"{where} line {event['line']} col {event['column']} [{event['check']}] "
                      f"{event['message']}\n    ...{event['excerpt']}...")
            if event["severity"] == "ERROR" or result["fatal"]:
                problems.append("ERROR " + detail)
            elif event["severity"] == "WARNING" and (event["check"], event["element"]) not in ALLOWED_WARNINGS:
                problems.append("WARNING (not in ALLOWED_WARNINGS) " + detail)
    summary = [f"{label}: {len(results)} feeds validated"]
    for (severity, check, element), hits in sorted(by_check.items()):
        where, event = hits[0]
        feeds = len({w for w, _ in hits})
        summary.append(f"  {severity} {check} ({element}) in {feeds} feed(s), e.g. {where} line {event['line']} "
                       f"col {event['column']}: {event['message']}\n      ...{event['excerpt']}...")
    print("\n".join(summary))
    seen = {(check, element) for (_severity, check, element) in by_check}
    problems += [f"ALLOWED_WARNINGS lists {key}, which no feed shows any more: remove it" for key in ALLOWED_WARNINGS
                 if key not in seen]
    assert not problems, (f"{len(problems)} finding(s) of the W3C feed validator ({label}):\n"
                          + "\n".join(problems[:60]) + ("\n..." if len(problems) > 60 else "")
                          + "\n\nBy check:\n" + "\n".join(summary[1:]))


# ----------------------------------------------------------------------------------------------- tests


def test_every_served_feed_validates_over_http(content, tmp_path):
    started = time.monotonic()
    with serve(content, *COMMON) as base:
        status, _head, body = http_get(base + "/status")
        assert status == 200
        info = json.loads(body)
        slugs = tuple(topic["slug"] for topic in info["topics"])
        found = discover(base, http_fetch, slugs)
        # Discovery reached every topic's and all's subscription feeds and their every archive page.
        counts = {"all": info["items"], **{topic["slug"]: topic["items"] for topic in info["topics"]}}
        for slug, items in counts.items():
            pages = math.ceil(max(0, items - FEED_LIMIT) / FEED_LIMIT)
            for fmt in ("rss", "atom"):
                assert f"{base}/feeds/{slug}.{fmt}" in found, f"no link leads to {slug}.{fmt}"
                assert archive_pages(found, base, slug, fmt) == set(range(1, pages + 1)), \
                    f"{slug}.{fmt}: {items} items make {pages} archive pages; links lead to " \
                    f"{sorted(archive_pages(found, base, slug, fmt))}"
        shapes = {min(math.ceil(max(0, n - FEED_LIMIT) / FEED_LIMIT), 2) for n in counts.values()}
        assert shapes == {0, 1, 2}, f"the corpus should have topics with 0, 1 and several archive pages: {counts}"
        results = validate([{"target": url, "where": where} for url, where in found.items()], tmp_path)
    print(f"\n{len(found)} feeds discovered and validated over HTTP in {time.monotonic() - started:.1f} s")
    judge(results, "syndicator serve over HTTP", show=lambda url: url.removeprefix(base))


def test_every_built_feed_validates(content, tmp_path):
    started = time.monotonic()
    out = tmp_path / "site"
    result = subprocess.run([*SYNDICATOR, "build", "--content", str(content), "--out", str(out),
                             "--base-url", BUILD_BASE, "--hub-url", HUB, *COMMON],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    found = discover(BUILD_BASE, file_fetcher(out, BUILD_BASE))
    on_disk = {BUILD_BASE + "/" + p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and p.suffix in FILE_CONTENT_TYPES}
    assert set(found) == on_disk, (f"written but linked from nowhere: {sorted(on_disk - set(found))[:10]}; "
                                   f"linked but not written: {sorted(set(found) - on_disk)[:10]}")
    jobs = []
    for url, where in found.items():
        path = out / url.removeprefix(BUILD_BASE + "/")
        jobs.append({"target": str(path), "where": where, "content_type": FILE_CONTENT_TYPES[path.suffix]})
    results = validate(jobs, tmp_path)
    print(f"\n{len(found)} built feeds validated in {time.monotonic() - started:.1f} s")
    judge(results, "syndicator build", show=lambda path: BUILD_BASE + "/" + Path(path).relative_to(out).as_posix())


if __name__ == "__main__":  # the validator worker (see validate())
    worker(*sys.argv[1:])
