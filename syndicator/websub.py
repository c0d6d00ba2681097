"""WebSub publishing: after a rescan, tell the hub which feeds changed, off the rescan path.

Only feeds whose bytes changed are pinged. Pings run in a background thread with retries and
exponential backoff; failures are logged, never raised. With several gunicorn workers, only the worker
holding an exclusive lock file pings, so the hub hears about each change once rather than once per worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import queue
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import documents, feeds
from .snapshot import Snapshot

log = logging.getLogger(__name__)


def changed_feed_urls(old: Snapshot | None, new: Snapshot, site: documents.Site) -> list[str]:
    """URLs of the subscription feeds (every format) whose bytes differ between two snapshots."""
    urls = []
    for slug in ("all", *new.topics):
        for kind in (None, *documents.kinds(new, slug)):
            for fmt in feeds.FORMATS:
                doc = documents.feed_document(new, site, slug, fmt, kind=kind)
                assert doc is not None, f"{slug} is a topic of the snapshot"
                before = documents.feed_document(old, site, slug, fmt, kind=kind) if old is not None else None
                if before is None or before.etag != doc.etag:
                    urls.append(site.feed_url(slug, fmt, None, kind))
    return urls


class Pinger:
    """Sends `hub.mode=publish` for changed feeds from a daemon thread."""

    def __init__(self, hub_url: str, site: documents.Site, *, attempts: int = 5, backoff: float = 2.0,
                 timeout: float = 10.0, lock_dir: str | None = None):
        self.hub_url = hub_url
        self.site = site
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        key = hashlib.sha256(f"{hub_url} {site.base_url}".encode()).hexdigest()[:16]
        self._lock_path = os.path.join(lock_dir or tempfile.gettempdir(), f"syndicator-websub-{key}.lock")
        self._lock_fd: int | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.sent: list[str] = []  # URLs the hub acknowledged, for status and tests

    def _is_leader(self) -> bool:
        """One process per (hub, site) pings; the lock is kept for the process's life and freed on exit."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def on_publish(self, old: Snapshot | None, new: Snapshot) -> None:
        """Rescanner hook: queue pings for the feeds that changed. Cheap; never blocks on the network."""
        if old is None or not self._is_leader():
            return  # the first snapshot of a process is a start, not a change
        self._queue_pings(changed_feed_urls(old, new, self.site))

    def publish(self, urls: list[str]) -> None:
        """Queue pings for these feed URLs, whichever process holds the lock: `syndicator deploy` is the
        one that knows when its uploads are live, and it pings once per deploy."""
        self._queue_pings(urls)

    def _queue_pings(self, urls: list[str]) -> None:
        if self._thread is None or not self._thread.is_alive():
            # Started here, not in __init__: the app may be built in gunicorn's master, and threads
            # do not survive the fork into the workers that actually rescan.
            self._thread = threading.Thread(target=self._run, name="websub-pinger", daemon=True)
            self._thread.start()
        for url in urls:
            self._queue.put(url)

    def _run(self) -> None:
        while True:
            url = self._queue.get()
            if url is None:
                return
            self._ping(url)
            self._queue.task_done()

    def _ping(self, url: str) -> None:
        data = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": url}).encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.hub_url, data=data, method="POST",
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        self.sent.append(url)
                        log.info("websub ping ok hub=%s url=%s", self.hub_url, url)
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            log.warning("websub ping failed hub=%s url=%s attempt=%d/%d: %s", self.hub_url, url, attempt,
                        self.attempts, problem)
            if attempt < self.attempts:
                time.sleep(delay)
                delay *= 2
        log.error("websub ping gave up hub=%s url=%s after %d attempts", self.hub_url, url, self.attempts)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until queued pings are done (for tests and shutdown). True when the queue emptied."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks
