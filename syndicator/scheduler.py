"""The rescan job: scan, build a snapshot, render what changed, swap. A failure never takes feeds down."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from . import documents
from .config import Settings
from .index import Publisher, ScanError, Scanner, Snapshot, build_snapshot

log = logging.getLogger(__name__)


class Rescanner:
    """Owns the scanner state of one process and publishes snapshots to a `Publisher`."""

    def __init__(self, settings: Settings, publisher: Publisher, *, site: documents.Site | None = None,
                 on_publish: Callable[[Snapshot | None, Snapshot], None] | None = None):
        self.settings = settings
        self.publisher = publisher
        self.scanner = Scanner(settings.content, site_url=settings.site_url,
                               max_file_bytes=settings.max_file_bytes)
        self.site = site  # when the public URL is known up front, feeds are rendered before publishing
        self.on_publish = on_publish
        self._lock = threading.Lock()
        self._scheduler = None
        self.last_scan: dt.datetime | None = None

    def run_once(self, now: dt.datetime | None = None) -> bool:
        """One rescan. Returns True when a new snapshot was published. Never raises."""
        with self._lock:
            started = time.perf_counter()
            try:
                scan = self.scanner.scan()
                now = now or dt.datetime.now(dt.timezone.utc)
                previous = self.publisher.snapshot
                unchanged = (previous is not None and scan.stats.changed == 0 and scan.stats.removed == 0
                             and (previous.next_due is None or now < previous.next_due))
                self.last_scan = now
                if unchanged:
                    self.publisher.touch(now, scan.seconds)
                    log.info("rescan files=%d changed=0 parsed=0 problems=%d seconds=%.3f published=no",
                             scan.stats.seen, len(previous.problems), time.perf_counter() - started)
                    return False
                snapshot = build_snapshot(scan, now=now, previous=previous)
                reused = documents.carry_over(snapshot, previous)
                rendered = documents.prerender(snapshot, self.site) if self.site else 0
                self.publisher.publish(snapshot)
                self.publisher.touch(now, scan.seconds)
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
            return False

    def start(self) -> None:
        """Run the rescan every `interval` seconds in a background thread (APScheduler)."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(daemon=True, timezone=dt.timezone.utc)
        scheduler.add_job(self.run_once, "interval", seconds=self.settings.interval, id="rescan",
                          max_instances=1, coalesce=True, misfire_grace_time=self.settings.interval)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
