"""Static export: the same documents the server sends, written as files for nginx, object storage or a CDN.

Each build writes a new generation directory beside the output and then swaps a symlink to it, so a
reader (nginx, a sync to a bucket) sees the old tree or the new one, never a mix. Files whose bytes did
not change are hard-linked from the previous generation, keeping their mtime, so ETags and
Last-Modified that nginx derives from the file stay valid.
"""

from __future__ import annotations

import fcntl
import hashlib
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

from . import documents, feeds, fragments
from .config import Settings
from .scan import STALE_NOTE
from .snapshot import Snapshot

log = logging.getLogger(__name__)
MANIFEST = ".manifest.json"
REDIRECTS = ".redirects.nginx"  # hidden: nginx serves no dot files; its server block includes this one
STATIC_FILES = ("style.css", "filter.js", "feed.xsl")
WRITER_THREADS = 2  # per process; the disk, not the CPU, is what they wait on


class ExportError(Exception):
    """The export cannot be written where asked; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    directory: Path  # the generation directory the output symlink now points at
    written: int
    unchanged: int
    seconds: float
    reused: int = 0  # feed documents (with their .gz) linked from the previous export without rendering


def feed_files(snapshot: Snapshot, site: documents.Site, slug: str, fmt: str
               ) -> Iterator[tuple[str, documents.FeedKey]]:
    """Every feed document of one topic in one format (subscription and archives, of every item and of
    each kind) as (path, key)."""
    for kind in (None, *documents.kinds(snapshot, slug)):
        base = f"feeds/{slug}" + (f"/{kind}" if kind else "")
        yield f"{base}.{fmt}", documents.FeedKey(site, slug, fmt, None, None, kind)
        for page in range(1, documents.archive_count(snapshot, site, slug, kind) + 1):
            yield f"{base}/archive/{page}.{fmt}", documents.FeedKey(site, slug, fmt, page, None, kind)


def redirect_rules(snapshot: Snapshot) -> bytes:
    """nginx rewrite rules for renamed topics (a definition's aliases): every URL of the former slug
    answers 301 with the new one, as the server does. Included by deploy/nginx-static.conf."""
    lines = ["# Written by syndicator build: renamed topics (aliases). nginx reads it when it (re)loads."]
    for old, new in sorted(snapshot.aliases.items()):
        lines.append(f"rewrite ^/feeds/{old}((?:/[a-z0-9-]+)?(?:/archive/[0-9]+)?\\.(?:rss|atom|json))$ "
                     f"/feeds/{new}$1 permanent;")
        lines.append(f"rewrite ^/topics/{old}/(.*)$ /topics/{new}/$1 permanent;")
    return ("\n".join(lines) + "\n").encode()


def other_files(snapshot: Snapshot, site: documents.Site, settings: Settings) -> Iterator[tuple[str, bytes]]:
    """OPML, HTML pages and static files as (path, bytes), rendered by the code that serves HTTP."""
    yield "topics.opml", documents.opml_document(snapshot, site).body
    yield REDIRECTS, redirect_rules(snapshot)
    yield from _pages(snapshot, settings)
    static = Path(__file__).parent / "static"
    for name in STATIC_FILES:
        yield f"static/{name}", (static / name).read_bytes()


@dataclass(frozen=True)
class _Target:
    """Where a build writes and what it can reuse from the previous generation."""

    directory: Path
    previous: Path | None
    old_manifest: dict[str, str]
    now: float
    site: documents.Site

    def link(self, rel: str) -> bool:
        """Hard-link the previous generation's file, known unchanged without looking at its bytes."""
        if self.previous is None or rel not in self.old_manifest:
            return False
        dest = self.directory / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.previous / rel, dest)
            return True
        except FileExistsError:
            return True  # linked already: the document's first try got this far
        except OSError:
            return False

    def put(self, rel: str, body: bytes) -> tuple[str, bool]:
        """Write one file (hard-linking unchanged bytes from the previous build); (sha256, was it new)."""
        digest = hashlib.sha256(body).hexdigest()
        dest = self.directory / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        previous = self.previous if self.previous is not None and rel in self.old_manifest else None
        if previous is not None and self.old_manifest[rel] == digest:
            try:
                os.link(previous / rel, dest)  # same bytes: same inode, same mtime
                return digest, False
            except OSError:
                pass  # previous generation pruned or on another filesystem: write it anew
        with open(dest, "wb") as f:
            f.write(body)
        if previous is not None:
            # nginx's ETag is mtime (whole seconds) + size: a changed file must get a later second than
            # its old version, or a same-size change within a second would keep the old ETag.
            try:
                before = (previous / rel).stat().st_mtime
                if int(self.now) <= int(before):
                    os.utime(dest, (int(before) + 1, int(before) + 1))
            except OSError:
                pass
        return digest, True


def _put_all(target: _Target, files: Iterator[tuple[str, bytes]]) -> list[tuple[str, str, bool]]:
    """Write files that are not documents of the memo (pages, OPML, static files) with their .gz."""
    results = []
    for rel, body in files:
        results.append((rel, *target.put(rel, body)))
        if rel != REDIRECTS:  # configuration, not a document
            results.append((rel + ".gz", *target.put(rel + ".gz", documents.compress(body))))
    return results


def _write_feeds(state: tuple[Snapshot, _Target, str, Snapshot | None],
                 slugs: list[str]) -> tuple[list[tuple[str, str, bool]], int]:
    """Write one format's feed documents of some topics. A document whose page is the one the previous
    export wrote (the same items, links and dates; `previous` is the snapshot it exported) is linked
    from there without rendering: full archive pages, and every feed of a topic that did not change."""
    from concurrent.futures import ThreadPoolExecutor

    snapshot, target, fmt, previous = state
    rows = []
    puts = []
    reused = 0
    # Hashing and writing release the GIL: threads do them while this thread renders the next document.
    with ThreadPoolExecutor(WRITER_THREADS) as writers:
        for slug in slugs:
            unchanged_topic = previous is not None and documents.same_topic(snapshot, previous, slug)
            for rel, key in feed_files(snapshot, target.site, slug, fmt):
                if previous is not None and rel in target.old_manifest and (
                        unchanged_topic or documents.same_page(snapshot, previous, key)):
                    if target.link(rel) and target.link(rel + ".gz"):
                        rows += [(rel, target.old_manifest[rel], False),
                                 (rel + ".gz", target.old_manifest[rel + ".gz"], False)]
                        reused += 1
                        continue
                doc = documents.feed_document(snapshot, *key, keep=False)
                assert doc is not None, f"{rel} is a document of the snapshot"
                puts += [(rel, writers.submit(target.put, rel, doc.body)),
                         (rel + ".gz", writers.submit(target.put, rel + ".gz", doc.gzip))]
    return rows + [(rel, *future.result()) for rel, future in puts], reused


def _pages(snapshot: Snapshot, settings: Settings) -> Iterator[tuple[str, bytes]]:
    """HTML pages through the Flask app itself, so they are the server's pages byte for byte."""
    from .snapshot import Publisher
    from .web import create_app

    publisher = Publisher()
    publisher.publish(snapshot)
    client = create_app(settings, publisher=publisher).test_client()
    # A browser-like Accept never matters for pages; plain GETs give the canonical bytes.
    for path, url in [("index.html", "/"), *((f"topics/{slug}/index.html", f"/topics/{slug}/")
                                            for slug in snapshot.topics)]:
        response = client.get(url)
        if response.status_code != 200:
            raise ExportError(f"rendering {url} failed with HTTP {response.status_code}")
        yield path, response.data


def _generations(out: Path) -> list[Path]:
    """Generation directories beside `out`, oldest first (by number: names stop sorting at 1,000,000)."""
    def number(path: Path) -> int:
        suffix = path.name.rsplit("-", 1)[1]
        return int(suffix) if suffix.isdigit() else -1

    return sorted((p for p in out.parent.glob(f".{out.name}.gen-*") if number(p) >= 0), key=number)


def write_export(snapshot: Snapshot, settings: Settings, out: str | os.PathLike[str],
                 progress: Callable[[str], None] | None = None,
                 previous: tuple[Snapshot, Path] | None = None) -> ExportResult:
    """Write every document (plus .gz siblings) into a new generation and swap `out` to it atomically.

    `previous` is (the snapshot, the generation directory) of this process's last export into `out`:
    documents whose page has not changed since are linked from there without rendering (when `out`
    still points at that generation). One build at a time per `out` (a lock file beside it); a second
    one waits for the first.
    """
    if not settings.base_url:
        raise ExportError("a static export needs --base-url: feeds carry absolute self links")
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        return _write_locked(snapshot, settings, out, progress, previous)


def _write_locked(snapshot: Snapshot, settings: Settings, out: Path, progress: Callable[[str], None] | None,
                  previous_export: tuple[Snapshot, Path] | None) -> ExportResult:
    workers = settings.workers_for_parsing
    started = time.perf_counter()
    if out.exists() and not out.is_symlink():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise ExportError(f"{out} exists and is not an export (a symlink made by `syndicator build`); "
                              "remove it or choose another --out")
    previous = out.resolve() if out.is_symlink() else None
    old_manifest: dict[str, str] = {}
    if previous is not None and (previous / MANIFEST).is_file():
        try:
            old_manifest = json.loads((previous / MANIFEST).read_text())
        except (OSError, ValueError):
            old_manifest = {}
    gens = _generations(out)
    number = int(gens[-1].name.rsplit("-", 1)[1]) + 1 if gens else 1
    target = out.parent / f".{out.name}.gen-{number:06d}"
    target.mkdir()  # fails rather than ever writing into an existing tree
    site = documents.Site.of(settings)

    manifest: dict[str, str] = {}
    written = unchanged = reused = 0
    where = _Target(target, previous, old_manifest, time.time(), site)
    # Only the export this process made last, when `out` still shows it: its pages are known.
    before = previous_export[0] if previous_export and previous_export[1] == previous and old_manifest else None
    try:
        # Feeds and archives are most of the work, independent per topic: forked processes assemble and
        # write them, one format at a time so that only one format's entry fragments are in memory.
        # Pages, OPML and static files follow in this process.
        from .parallel import fork_imap

        slugs = ["all", *snapshot.topics]
        size = max(5, len(slugs) // (workers * 8))
        chunks = [slugs[i:i + size] for i in range(0, len(slugs), size)]
        rows: list[tuple[str, str, bool]] = []
        for fmt in feeds.FORMATS:
            if before is None:  # every entry is needed: render them all once, on every core
                fragments.keep(snapshot, fmt, site.related_limit, snapshot.all_items, workers)
            else:  # a few documents changed: render their entries when they are reached
                fragments.keep(snapshot, fmt, site.related_limit, (), 1)
            for done, (chunk_rows, chunk_reused) in enumerate(
                    fork_imap(_write_feeds, chunks, (snapshot, where, fmt, before), workers), 1):
                rows.extend(chunk_rows)
                reused += chunk_reused
                if progress and done % max(1, len(chunks) // 4) == 0:
                    progress(f"  {fmt}: feeds of {min(done * size, len(slugs)):,} of {len(slugs):,} topics written")
            fragments.drop(snapshot)
        rows.extend(_put_all(where, other_files(snapshot, site, settings)))
        for rel, digest, new in rows:
            manifest[rel] = digest
            written += new
            unchanged += not new
        (target / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))
        for rel in [MANIFEST, *(rel for rel, _digest, new in rows if new)]:
            # fsync what was written (links share synced inodes) so a crash after the swap cannot
            # expose empty files.
            fd = os.open(target / rel, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        link = out.parent / f".{out.name}.link-{number:06d}"
        os.symlink(target.name, link)
        os.replace(link, out)  # the atomic step: `out` now names the complete new tree
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    for old in _generations(out):
        if old not in (target, previous):  # keep the previous tree for readers still inside it
            shutil.rmtree(old, ignore_errors=True)
    return ExportResult(target, written, unchanged, time.perf_counter() - started, reused)


def build(settings: Settings, out: str, *, watch: bool = False, stream=sys.stderr) -> int:
    """`syndicator build`: scan, render, write; with `watch`, keep rebuilding after every change.

    An export that fails (disk full, say) is retried at the next interval even when the content did not
    change again; with `hub_url`, the hub hears about changed feeds after each successful swap.
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
    if settings.hub_url:
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
                                  previous=(before, state["directory"]) if before is not None else None)
            not_rendered = f" ({result.reused:,} feeds not even rendered)" if result.reused else ""
            say(f"wrote {result.written:,} files, kept {result.unchanged:,} unchanged{not_rendered}, into {out} -> "
                f"{result.directory.name} in {result.seconds:.1f} s")
            state["exported"], state["directory"] = new, result.directory
            if pinger is not None:
                pinger.on_publish(before, new)

    rescanner = Rescanner(settings, publisher, site=site, on_publish=lambda _old, new: export(new),
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
