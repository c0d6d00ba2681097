"""Static export: the same documents the server sends, written as files for nginx, object storage or a CDN.

Each build writes a new generation directory beside the output and then swaps a symlink to it, so a
reader (nginx, a sync to a bucket) sees the old tree or the new one, never a mix. Files whose bytes did
not change are hard-linked from the previous generation, keeping their mtime, so ETags and
Last-Modified that nginx derives from the file stay valid.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import documents, feeds, fragments, heap
from .config import Settings
from .generation import (
    PAGES,
    FeedTask,
    Generation,
    Row,
    Stamps,
    feed_files,
    read_json,
    render_code_key,
    write_feeds,
)
from .model import Item
from .scan import STALE_NOTE
from .snapshot import Snapshot

log = logging.getLogger(__name__)
MANIFEST = ".manifest.json"
REDIRECTS = ".redirects.nginx"  # hidden: nginx serves no dot files; its server block includes this one
STATIC_FILES = ("style.css", "filter.js", "feed.xsl")
PAGES_PER_TASK = 100  # HTML pages per task: each task makes its own Flask app
DOCS_PER_TASK = 64  # feed documents a writer takes at a time: small enough to keep both cores busy to the end


class ExportError(Exception):
    """The export cannot be written where asked; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    directory: Path  # the generation directory the output symlink now points at
    written: int
    unchanged: int
    seconds: float
    reused: int = 0  # feed documents (with their .gz) linked from the previous export without rendering


def redirect_rules(snapshot: Snapshot) -> bytes:
    """nginx rewrite rules for renamed topics (a definition's aliases): every URL of the former slug
    answers 301 with the new one, as the server does. Included by deploy/nginx-static.conf."""
    lines = ["# Written by syndicator build: renamed topics (aliases). nginx reads it when it (re)loads."]
    for old, new in sorted(snapshot.aliases.items()):
        lines.append(f"rewrite ^/feeds/{old}((?:/[a-z0-9-]+)?(?:/archive/[0-9]+)?\\.(?:rss|atom|json))$ "
                     f"/feeds/{new}$1 permanent;")
        lines.append(f"rewrite ^/topics/{old}/(.*)$ /topics/{new}/$1 permanent;")
    return ("\n".join(lines) + "\n").encode()


def other_files(snapshot: Snapshot, site: documents.Site) -> Iterator[tuple[str, bytes]]:
    """OPML, the nginx redirects and static files as (path, bytes), rendered by the code that serves HTTP."""
    yield "topics.opml", documents.opml_document(snapshot, site).body
    yield REDIRECTS, redirect_rules(snapshot)
    static = Path(__file__).parent / "static"
    for name in STATIC_FILES:
        yield f"static/{name}", (static / name).read_bytes()


def _put_all(target: Generation, files: Iterator[tuple[str, bytes]]) -> list[tuple[str, str, bool]]:
    """Write files that are not documents of the memo (pages, OPML, static files) with their .gz."""
    results = []
    for rel, body in files:
        results.append((rel, *target.put(rel, body)))
        if rel != REDIRECTS:  # configuration, not a document
            results.append((rel + ".gz", *target.put(rel + ".gz", documents.compress(body))))
    return results


def page_urls(snapshot: Snapshot) -> list[tuple[str, str]]:
    """(path, URL) of every HTML page: the index and each topic's page."""
    return [("index.html", "/"), *((f"topics/{slug}/index.html", f"/topics/{slug}/") for slug in snapshot.topics)]


def _write_pages(state: tuple[Snapshot, Settings, Generation], pages: list[tuple[str, str]]) -> list[Row]:
    """Write HTML pages (with their .gz) rendered by the Flask app itself, so they are the server's pages
    byte for byte."""
    from .snapshot import Publisher
    from .web import create_app

    snapshot, settings, target = state
    publisher = Publisher()
    publisher.publish(snapshot)
    client = create_app(settings, publisher=publisher).test_client()
    files = []
    # A browser-like Accept never matters for pages; plain GETs give the canonical bytes.
    for path, url in pages:
        response = client.get(url)
        if response.status_code != 200:
            raise ExportError(f"rendering {url} failed with HTTP {response.status_code}")
        files.append((path, response.data))
    return _put_all(target, iter(files))


def _generations(out: Path) -> list[Path]:
    """Generation directories beside `out`, oldest first (by number: names stop sorting at 1,000,000)."""
    def number(path: Path) -> int:
        suffix = path.name.rsplit("-", 1)[1]
        return int(suffix) if suffix.isdigit() else -1

    return sorted((p for p in out.parent.glob(f".{out.name}.gen-*") if number(p) >= 0), key=number)


def _sync(directory: Path, written: list[str]) -> None:
    """Make the files on disk before the swap, so that a crash after it cannot expose empty files.

    One syncfs(2) of the export's filesystem costs about a tenth of an fsync per file (each fsync waits
    for its own journal commit: 3.5 s against 0.45 s for 10,500 files here); elsewhere, fsync each file
    written (linked files share inodes the previous build synced)."""
    import ctypes

    fd = os.open(directory, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass  # no syncfs here
    finally:
        os.close(fd)
    for rel in written:
        fd = os.open(directory / rel, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def write_export(snapshot: Snapshot, settings: Settings, out: str | os.PathLike[str],
                 progress: Callable[[str], None] | None = None,
                 previous: tuple[Snapshot, Path] | None = None,
                 sources: tuple[str, Callable[[Item], str]] | None = None) -> ExportResult:
    """Write every document (plus .gz siblings) into a new generation and swap `out` to it atomically.

    Feed documents whose page has not changed are linked from the generation `out` shows without being
    rendered, known from `previous` (the snapshot and generation directory of this process's last
    export into `out`) or from `sources` (`Scanner.source_stamps()`: the pages' signatures that the
    last build recorded). One build at a time per `out` (a lock file beside it); a second one waits.
    """
    if not settings.base_url:
        raise ExportError("a static export needs --base-url: feeds carry absolute self links")
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        # Rendering allocates millions of short-lived containers (entries, fragments): with the collector
        # on, each full collection walks them all, in every forked writer too.
        with heap.paused():
            return _write_locked(snapshot, settings, out, progress, previous, sources)


def _write_locked(snapshot: Snapshot, settings: Settings, out: Path, progress: Callable[[str], None] | None,
                  previous_export: tuple[Snapshot, Path] | None,
                  sources: tuple[str, Callable[[Item], str]] | None) -> ExportResult:
    workers = settings.workers_for_parsing
    started = time.perf_counter()
    if out.exists() and not out.is_symlink():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise ExportError(f"{out} exists and is not an export (a symlink made by `syndicator build`); "
                              "remove it or choose another --out")
    previous = out.resolve() if out.is_symlink() else None
    old_manifest = read_json(previous / MANIFEST) if previous is not None else {}
    gens = _generations(out)
    number = int(gens[-1].name.rsplit("-", 1)[1]) + 1 if gens else 1
    target = out.parent / f".{out.name}.gen-{number:06d}"
    target.mkdir()  # fails rather than ever writing into an existing tree
    site = documents.Site.of(settings)

    manifest: dict[str, str] = {}
    written = unchanged = reused = 0
    code = render_code_key() + (sources[0].encode() if sources else b"")
    old_pages = read_json(previous / PAGES) if previous is not None and sources and old_manifest else {}
    if old_pages.pop("", None) != code.hex():
        old_pages = {}  # other code or reader settings made them: no signature can match
    where = Generation(target, previous, old_manifest, time.time(), site, old_pages)
    # Only the export this process made last, when `out` still shows it: its pages are known.
    before = previous_export[0] if previous_export and previous_export[1] == previous and old_manifest else None
    pages: dict[str, str] = {"": code.hex()}
    stamps = Stamps.of(snapshot.all_items, sources[1]) if sources else None
    try:
        # Feeds and archives are most of the work, independent per topic: forked processes assemble and
        # write them, one format at a time so that only one format's entry fragments are in memory.
        # Pages, OPML and static files follow in this process.
        from .parallel import fork_imap

        slugs = ["all", *snapshot.topics]
        rows: list[Row] = []
        for fmt in feeds.FORMATS:
            if before is None and not old_pages:  # every entry is needed: render each once, on every core
                fragments.keep(snapshot, fmt, site.related_limit, snapshot.all_items, workers)
            else:  # most documents are taken over: render the entries of the others when reached
                fragments.keep(snapshot, fmt, site.related_limit, (), 1)
            task = FeedTask(snapshot, where, fmt, before, stamps, code)
            # Tasks of a few dozen documents each, whatever the topic: "all" alone is a quarter of them.
            docs = [doc for slug in slugs for doc in feed_files(snapshot, site, slug, fmt)]
            size = max(16, min(DOCS_PER_TASK, len(docs) // (workers * 8)))
            chunks = [docs[i:i + size] for i in range(0, len(docs), size)]
            for done, chunk in enumerate(fork_imap(write_feeds, chunks, task, workers), 1):
                rows.extend(chunk.rows)
                pages.update(chunk.pages)
                reused += chunk.reused
                if progress and done % max(1, len(chunks) // 4) == 0:
                    progress(f"  {fmt}: {min(done * size, len(docs)):,} of {len(docs):,} feed documents written")
            fragments.drop(snapshot)
        html = page_urls(snapshot)
        size = max(1, min(PAGES_PER_TASK, len(html) // (workers * 4)))
        for chunk_rows in fork_imap(_write_pages, [html[i:i + size] for i in range(0, len(html), size)],
                                    (snapshot, settings, where), workers):
            rows.extend(chunk_rows)
        rows.extend(_put_all(where, other_files(snapshot, site)))
        for rel, digest, new in rows:
            manifest[rel] = digest
            written += new
            unchanged += not new
        (target / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
        if sources:
            (target / PAGES).write_text(json.dumps(pages, sort_keys=True))
        _sync(target, [MANIFEST, *([PAGES] if sources else []), *(rel for rel, _digest, new in rows if new)])
        link = out.parent / f".{out.name}.link-{number:06d}"
        os.symlink(target.name, link)
        os.replace(link, out)  # the atomic step: `out` now names the complete new tree
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    # Keep the previous tree for readers still inside it; older ones go, on a thread of their own: the new
    # export is live already, and deleting 86,000 files takes seconds (a process still waits for it).
    import threading

    def prune(stale: list[Path]) -> None:
        for old in stale:
            shutil.rmtree(old, ignore_errors=True)

    threading.Thread(target=prune, args=([old for old in _generations(out) if old not in (target, previous)],),
                     name="export-prune").start()
    return ExportResult(target, written, unchanged, time.perf_counter() - started, reused)


def build(settings: Settings, out: str, *, watch: bool = False, stream=sys.stderr, ping: bool = True) -> int:
    """`syndicator build`: scan, render, write; with `watch`, keep rebuilding after every change.

    An export that fails (disk full, say) is retried at the next interval even when the content did not
    change again; with `hub_url` (and `ping`), the hub hears about changed feeds after each successful
    swap. Without `ping` someone else tells it: `deploy`, once the feeds are live in the bucket.
    """
    import threading

    from .scheduler import Rescanner
    from .snapshot import Publisher

    def say(message: str) -> None:
        print(message, file=stream, flush=True)

    if not settings.base_url:
        raise ExportError("a static export needs --base-url: feeds carry absolute self links")
    publisher = Publisher()
    site = documents.Site.of(settings)
    pinger = None
    if settings.hub_url and ping:
        from .websub import Pinger

        pinger = Pinger(settings.hub_url, site)
    state: dict[str, Any] = {"exported": None, "directory": None}  # the last export: its snapshot, where
    lock = threading.Lock()

    def export(new: Snapshot) -> None:
        with lock:
            say(f"scanned {new.stats.seen:,} files ({new.stats.parsed:,} parsed): {len(new.all_items):,} items, "
                f"{len(new.topics):,} topics, {len(new.problems):,} problems")
            for problem in new.problems:
                if problem.stale:  # only with export_last_good: a version nobody sees on disk now
                    say(f"warning: exporting the last good version of {problem.path} (export_last_good); "
                        f"the file is broken now: {problem.reason.removesuffix(STALE_NOTE)}")
            say(f"rendering {len(new.topics) + 1:,} topics x {len(feeds.FORMATS)} formats, pages and archives")
            before = state["exported"]
            result = write_export(new, settings, out, progress=say,
                                  previous=(before, state["directory"]) if before is not None else None,
                                  sources=rescanner.scanner.source_stamps())
            not_rendered = f" ({result.reused:,} feeds not even rendered)" if result.reused else ""
            say(f"wrote {result.written:,} files, kept {result.unchanged:,} unchanged{not_rendered}, into {out} -> "
                f"{result.directory.name} in {result.seconds:.1f} s")
            state["exported"], state["directory"] = new, result.directory
            if pinger is not None:
                pinger.on_publish(before, new)

    # No site: nothing is rendered ahead of the export, which renders every document itself.
    rescanner = Rescanner(settings, publisher, on_publish=lambda _old, new: export(new),
                          last_good=settings.export_last_good)
    say(f"scanning {settings.content} ...")
    started = time.perf_counter()
    if not rescanner.run_once():
        say(f"syndicator: build failed: {publisher.health.message or 'nothing to export'}")
        return 2
    say(f"done in {time.perf_counter() - started:.1f} s")
    if not watch:
        rescanner.flush()  # the parse cache, so that the next build (or a server) starts warm
        if pinger is not None:
            pinger.drain()
        return 0
    say(f"watching {settings.content} for changes (Ctrl-C to stop)")
    rescanner.start()
    try:
        while True:
            time.sleep(settings.interval)
            current = publisher.snapshot
            if current is not None and state["exported"] is not current:
                say("retrying the export that failed")
                try:
                    export(current)
                except Exception as exc:  # keep watching; the old export stays online
                    log.error("export failed, the previous export stays online: %s", exc)
    except KeyboardInterrupt:
        rescanner.stop()
        rescanner.flush()
    return 0
