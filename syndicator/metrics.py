"""Prometheus metrics for `/metrics`: requests by route and status, and the state of the last scan.

Each app gets its own registry (no process-global state). Scan figures are read from the Publisher
when scraped, so the rescan path does no bookkeeping. Under gunicorn every worker counts its own
requests; a scrape reports the worker that answered it (label `pid` tells which).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .snapshot import Publisher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ScanCollector:
    def __init__(self, publisher: Publisher):
        self.publisher = publisher

    def collect(self):
        publisher = self.publisher
        snapshot = publisher.snapshot
        pid = str(os.getpid())

        def gauge(name: str, doc: str, value: float):
            family = GaugeMetricFamily(name, doc, labels=["pid"])
            family.add_metric([pid], value)
            return family

        yield gauge("syndicator_items", "Items served", len(snapshot.all_items) if snapshot else 0)
        yield gauge("syndicator_topics", "Topics served", len(snapshot.topics) if snapshot else 0)
        yield gauge("syndicator_problems", "Files with problems", len(snapshot.problems) if snapshot else 0)
        yield gauge("syndicator_scan_duration_seconds", "Duration of the last scan", publisher.scan_seconds)
        yield gauge("syndicator_last_successful_scan_timestamp_seconds", "Unix time of the last successful scan",
                    publisher.last_scan.timestamp() if publisher.last_scan else 0)
        yield gauge("syndicator_healthy", "1 when the last rescan succeeded", 1 if publisher.health.ok else 0)


class Metrics:
    """The registry of one app."""

    def __init__(self, publisher: Publisher):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("syndicator_http_requests", "HTTP requests by route and status",
                                ["route", "status", "pid"], registry=self.registry)
        self.registry.register(_ScanCollector(publisher))
        # Labelled counters by (route, status, pid): labels() costs more than the rest of a 304 answer.
        self._counters: dict[tuple[str, int, int], Any] = {}

    def count(self, route: str, status: int) -> None:
        # The pid is read per call: the registry may be created before the server forks its workers.
        key = (route, status, os.getpid())
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(route, str(status), str(key[2]))
        counter.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
