"""The rescan job: scan, build a snapshot, render what changed, swap. A failure never takes feeds down."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import documents, heap
from .config import Settings
from .scan import ScanError, Scanner
from .snapshot import Publisher, Snapshot, build_snapshot, restored_snapshot

log = logging.getLogger(__name__)
# Seconds without further changes before the parse cache is written: edits come in bursts, and the
# write of a 100k-item cache is seconds of work better done once things are quiet.
CACHE_SAVE_DELAY = 30.0


def make_scanner(settings: Settings, *, autosave: bool = True, last_good: bool = True) -> Scanner:
    """A Scanner configured from settings (parse cache, parallel parsing); `last_good`: see Scanner."""
    return Scanner(settings.content, site_url=settings.site_url, max_file_bytes=settings.max_file_bytes,
                   workers=settings.workers_for_parsing, cache_file=settings.cache_file, autosave=autosave,
                   last_good=last_good)


def first_rescan(last_scan: dt.datetime | None, now: dt.datetime, slot: int, workers: int,
                 interval: float) -> dt.datetime:
    """When a worker first rescans. `slot` counts the workers a server has started, from 0; the first
    `workers` of them take turns after the scan their snapshot came from (`last_scan`; None: they have
    none), (slot+1)/workers of an interval after it. Later ones replace workers (a reload, a crash) and
    catch up at once, as does one without a snapshot."""
    workers = max(1, workers)
    if last_scan is None or slot >= workers:
        return now
    return max(now, last_scan + dt.timedelta(seconds=(slot + 1) * interval / workers))


class Rescanner:
    """Owns the scanner state of one process and publishes snapshots to a `Publisher`."""

    def __init__(self, settings: Settings, publisher: Publisher, *, site: documents.Site | None = None,
                 on_publish: Callable[[Snapshot | None, Snapshot], None] | None = None, last_good: bool = True):
        self.settings = settings
        self.publisher = publisher
        self.scanner = make_scanner(settings, autosave=False, last_good=last_good)
        self.site = site  # when the public URL is known up front, feeds are rendered before publishing
        self.on_publish = on_publish
        self._lock = threading.Lock()
        self._scheduler = None
        self._watcher: Watcher | None = None
        self._failed = False  # the last run failed after scanning: the next one must rebuild
        self.last_scan: dt.datetime | None = None

    def run_once(self, now: dt.datetime | None = None, paths: Iterable[str] | None = None) -> bool:
        """One rescan. Returns True when a new snapshot was published. Never raises.

        `paths`: the only files that changed, when filesystem events say so (see Scanner.scan)."""
        with self._lock:
            started = time.perf_counter()
            try:
                scan = self.scanner.scan(paths)
                if self._failed:
                    # The scanner took in the changes of the failed run, so this scan's delta misses them:
                    # patching the published snapshot with it would keep serving their old versions.
                    scan = dataclasses.replace(scan, delta=None)
                now = now or dt.datetime.now(dt.timezone.utc)
                previous = self.publisher.snapshot
                # After a failed rescan the scanner has already taken in the changes it saw, so "no
                # change" now would be wrong: rebuild until a snapshot has been published again.
                unchanged = (previous is not None and not self._failed and scan.stats.changed == 0
                             and scan.stats.removed == 0 and (previous.next_due is None or now < previous.next_due))
                self.last_scan = now
                if unchanged and previous is not None:
                    self.publisher.touch(now, scan.seconds)
                    log.info("rescan files=%d changed=0 parsed=0 problems=%d seconds=%.3f published=no",
                             scan.stats.seen, len(previous.problems), time.perf_counter() - started)
                    return False
                warm = restored_snapshot(self.scanner, scan) if previous is None else None
                if warm is not None and (warm.next_due is None or now < warm.next_due):
                    snapshot, changed = warm, False  # a warm start: the cache held this very snapshot
                else:
                    with heap.paused():
                        snapshot, changed = build_snapshot(scan, now=now, previous=previous), True
                with heap.paused():
                    reused = documents.carry_over(snapshot, previous)
                    rendered = (documents.prerender(snapshot, self.site, self.settings.workers_for_parsing)
                                if self.site else 0)
                self.publisher.publish(snapshot)
                if changed:
                    self.scanner.save(snapshot, CACHE_SAVE_DELAY)
                self.publisher.touch(now, scan.seconds)
                self._failed = False
                log.info("rescan files=%d changed=%d parsed=%d removed=%d items=%d topics=%d problems=%d "
                         "reused=%d rendered=%d seconds=%.3f published=yes",
                         scan.stats.seen, scan.stats.changed, scan.stats.parsed, scan.stats.removed,
                         len(snapshot.all_items), len(snapshot.topics), len(snapshot.problems),
                         reused, rendered, time.perf_counter() - started)
                if self.on_publish is not None:
                    self.on_publish(previous, snapshot)
                return True
            except ScanError as exc:
                log.error("rescan failed, keeping the last snapshot online: %s", exc)
                self.publisher.fail(str(exc))
            except Exception as exc:  # the last good feeds must stay online whatever went wrong
                log.exception("rescan failed, keeping the last snapshot online")
                self.publisher.fail(f"{type(exc).__name__}: {exc}")
            self._failed = True
            return False

    def flush(self) -> None:
        """Finish background work of the last rescan now: write the parse cache if a write is pending."""
        if self.scanner.cache is not None:
            self.scanner.cache.flush()

    def start(self, slot: int = 0) -> None:
        """Rescan every `interval` seconds (APScheduler) and, with fs_events, soon after any change.

        `slot` (the server's count of workers started before this one) staggers the processes of one server:
        worker k of n first rescans (k+1)/n of an interval after the scan its snapshot comes from, so their
        walks of the content directory do not compete for the same cores and disk, and a worker forked right
        after that scan does not walk 100k files again while it starts serving. A replacement worker, or one
        without a snapshot, rescans at once to catch up (replacements may then walk at the same time)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        interval = self.settings.interval
        inherited = self.last_scan if self.publisher.snapshot is not None else None
        first = first_rescan(inherited, dt.datetime.now(dt.timezone.utc), slot, self.settings.workers, interval)
        scheduler = BackgroundScheduler(daemon=True, timezone=dt.timezone.utc)
        scheduler.add_job(self.run_once, "interval", seconds=interval, id="rescan", next_run_time=first,
                          max_instances=1, coalesce=True, misfire_grace_time=interval)
        scheduler.start()
        self._scheduler = scheduler
        if self.settings.fs_events:
            self._watcher = Watcher(self.settings.content, self.run_once)
            self._watcher.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


class Watcher:
    """Filesystem events (inotify through watchdog) trigger a rescan within a fraction of a second.

    Events only say "something changed"; the rescan itself finds out what, by (mtime, size), so a missed
    or coalesced event costs nothing but latency, and the interval rescan remains the safety net.
    """

    DEBOUNCE = 0.05  # editors write a file in several steps; one rescan for the burst is enough

    def __init__(self, root: str, rescan: Callable[..., object]):
        self.root = root
        self.rescan = rescan  # called with paths=: the changed files, or None for "walk everything"
        self._paths: set[str] | None = set()
        self._paths_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._observer: Any = None  # watchdog's Observer, once started
        self._thread = threading.Thread(target=self._loop, name="fs-rescan", daemon=True)

    def start(self) -> bool:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            log.info("watchdog is not installed; changes appear at the next interval rescan")
            return False
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type not in ("opened", "closed_no_write"):
                    watcher._note(event)

        observer = Observer()
        try:
            observer.schedule(Handler(), self.root, recursive=True)
            observer.start()
        except OSError as exc:  # no inotify, watch limit reached, directory gone
            log.warning("filesystem events unavailable for %s (%s); rescanning every interval only",
                        self.root, exc)
            return False
        self._observer = observer
        self._thread.start()
        return True

    def _note(self, event) -> None:
        """Remember which files an event touched. A directory created, removed or moved can carry any
        number of files with it, so that asks for a full walk; a directory's own "modified" comes with
        the events of the files that modified it and adds nothing."""
        with self._paths_lock:
            if event.is_directory:
                if event.event_type != "modified":
                    self._paths = None
            elif self._paths is not None:
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    if path:
                        self._paths.add(os.path.relpath(os.fsdecode(path), self.root).replace(os.sep, "/"))
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            if self._stopped.is_set():
                return
            time.sleep(self.DEBOUNCE)
            self._wake.clear()
            with self._paths_lock:
                paths, self._paths = self._paths, set()
            self.rescan(paths=paths)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
