"""Cyclic-garbage-collector policy for bulk work on a large heap.

A 100k-item snapshot is millions of small objects. CPython's collector runs whenever allocations
outnumber frees by a threshold, and each full collection walks every tracked object: loading a parse
cache or a scan's results triggered dozens of full collections (docs/design.md has the figures). Our
model objects are immutable trees without reference cycles, so reference counting frees them; the cyclic
collector has nothing to find in them. What a paused block keeps is frozen (moved out of the collector's
sight), so later collections, per request, skip it, and forked workers do not copy pages just to update
collector bookkeeping. Cycles that died during a pause are collected before freezing, except after bulk
work (start-up, a full rebuild), where a cycle that died on another thread during the pause is never
collected: rare, and small.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.RLock()  # re-entrant: a finalizer run by a collection may pause too
BULK = 200_000  # net new container objects since the last collection above which a pause was bulk work
_depth = 0  # nesting of paused() blocks across threads; the collector resumes when the last one ends


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Pause automatic cyclic collection during bulk allocation; nested and concurrent use is safe."""
    global _depth
    with _lock:
        # Somebody else (a test, an embedding app) turned it off: leave their choice alone.
        ours = _depth > 0 or gc.isenabled()
        if ours:
            _depth += 1
            gc.disable()
    try:
        yield
    finally:
        if ours:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    # Cycles that died during the pause (request threads make some) are collected first,
                    # unless the pause allocated millions of objects (a cold start or cache load), where that
                    # collection would walk all of them (~1 s at 100k items) to find next to nothing.
                    if gc.get_count()[0] < BULK:
                        gc.collect()  # walks only what is not frozen: what this pause allocated
                    # What the work kept is long-lived; left to the collector, the first allocation after
                    # enable() would start a full collection walking all of it.
                    gc.freeze()
                    gc.enable()
