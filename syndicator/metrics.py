"""Prometheus metrics for `/metrics`: requests by route and status, and the state of the snapshot.

A scrape reaches one worker of the server, so request counts are kept in prometheus_client's
multiprocess files: every process of a server writes its own `counter_*_<pid>.db` (mmap-backed) in one
directory that the server makes at start (`private_directory`), and a scrape sums every file of it,
those of workers that have exited included, so a restarted worker loses no count. Without a directory
(Flask's test client, a single process under another WSGI server) the counts stay in memory.

The snapshot's figures (items, topics, problems, scan duration and time, health) are read from the
Publisher of the process that answers the scrape, once: every worker serves the same deterministic
snapshot (at most one rescan interval apart), so summing them over workers would be wrong, and the
rescan path does no bookkeeping for them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .snapshot import Publisher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUESTS = "syndicator_http_requests"
_REQUESTS_HELP = "HTTP requests by route and status"
_LABELS = ["route", "status"]


class _ScanCollector:
    def __init__(self, publisher: Publisher):
        self.publisher = publisher

    def collect(self):
        publisher = self.publisher
        snapshot = publisher.snapshot
        yield GaugeMetricFamily("syndicator_items", "Items served", len(snapshot.all_items) if snapshot else 0)
        yield GaugeMetricFamily("syndicator_topics", "Topics served", len(snapshot.topics) if snapshot else 0)
        yield GaugeMetricFamily("syndicator_problems", "Files with problems",
                                len(snapshot.problems) if snapshot else 0)
        yield GaugeMetricFamily("syndicator_scan_duration_seconds", "Duration of the last scan",
                                publisher.scan_seconds)
        yield GaugeMetricFamily("syndicator_last_successful_scan_timestamp_seconds",
                                "Unix time of the last successful scan",
                                publisher.last_scan.timestamp() if publisher.last_scan else 0)
        yield GaugeMetricFamily("syndicator_healthy", "1 when the last rescan succeeded",
                                1 if publisher.health.ok else 0)


class _LocalCounts:
    """The counts of this process alone, for an app without a directory."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        family = CounterMetricFamily(_REQUESTS, _REQUESTS_HELP, labels=_LABELS)
        for (route, status), value in sorted(self.metrics.counts().items()):
            family.add_metric([route, str(status)], value)
        yield family


class Metrics:
    """The request counts and the registry `/metrics` renders, for one app.

    `directory`: the server's multiprocess directory; each process that counts writes its own file there.
    """

    def __init__(self, publisher: Publisher, directory: str | None = None):
        self.directory = directory
        self.registry = CollectorRegistry(auto_describe=False)
        if directory is None:
            self.registry.register(_LocalCounts(self))
        else:
            MultiProcessCollector(self.registry, path=directory)
        self.registry.register(_ScanCollector(publisher))
        # One lock per process is enough: a count is a few dictionary operations and one 16-byte write.
        # The process that forks the workers serves nothing, so the lock is free at every fork.
        self._lock = threading.Lock()
        self._pid = 0
        self._counts: dict[tuple[str, int], float] = {}
        self._keys: dict[tuple[str, int], str] = {}
        self._file: MmapedDict | None = None

    def count(self, route: str, status: int) -> None:
        """One answered request (called on every request, the fast path's 304s included)."""
        key = (route, status)
        with self._lock:
            if self._pid != os.getpid():
                self._start_process()
            file = self._file
            value = self._counts.get(key)
            if value is None:
                value = self._first(key)
            value += 1.0
            self._counts[key] = value
            if file is not None:
                file.write_value(self._keys[key], value, 0.0)

    def _start_process(self) -> None:
        # The app may be built before the server forks: a worker counts from zero into a file of its own.
        self._pid = os.getpid()
        self._counts, self._keys = {}, {}
        if self.directory is not None:
            self._file = MmapedDict(os.path.join(self.directory, f"counter_syndicator_{self._pid}.db"))

    def _first(self, key: tuple[str, int]) -> float:
        if self._file is None:
            return 0.0
        self._keys[key] = mkey = mmap_key(_REQUESTS, _REQUESTS + "_total", _LABELS, [key[0], str(key[1])],
                                          _REQUESTS_HELP)
        # A file left by an exited process whose pid this one got again: go on from its count, not over it.
        return self._file.read_value(mkey)[0]

    def counts(self) -> dict[tuple[str, int], float]:
        """This process's counts by (route, status)."""
        with self._lock:
            return dict(self._counts) if self._pid == os.getpid() else {}

    def render(self) -> bytes:
        """The Prometheus text of one scrape: every process's counts summed, the snapshot's figures once."""
        return generate_latest(self.registry)


@contextmanager
def private_directory() -> Iterator[str]:
    """A fresh, empty multiprocess directory for one server start, in TMPDIR (systemd's PrivateTmp under
    deploy/syndicator.service); removed when the process that made it leaves the block. A worker forked
    inside the block that unwinds through it (gunicorn's workers end by SystemExit) leaves it alone."""
    path = tempfile.mkdtemp(prefix="syndicator-metrics-")
    owner = os.getpid()
    try:
        yield path
    finally:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)


def process_exited(directory: str, pid: int) -> None:
    """prometheus_client's bookkeeping for a process of the server that has exited: its files of live
    gauges go. Its counter file stays, on purpose: that is what keeps its requests in every later scrape."""
    mark_process_dead(pid, directory)
