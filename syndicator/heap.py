"""Cyclic-garbage-collector policy for bulk work on a large heap.

A 100k-item snapshot is millions of small objects. CPython's collector runs whenever allocations
outnumber frees by a threshold, and each full collection walks every tracked object: loading a parse
cache or a scan's results triggered dozens of full collections (measured: cache load 7-10 s with the
collector on, 2.2 s with it paused). Our model objects are immutable trees without reference cycles,
so reference counting frees them; the cyclic collector has nothing to find in them. What a paused
block keeps is frozen (moved out of the collector's sight), so later collections, per request, skip it,
and forked workers do not copy pages just to update collector bookkeeping. The price: a reference cycle
alive at the end of bulk work (the model has none; a request in flight on another thread might) is
never collected: a few kilobytes at most per published snapshot.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
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
                    # What the bulk work kept is long-lived; left to the collector, the first allocation
                    # after enable() would start a full collection walking all of it (~1 s at 100k items).
                    gc.freeze()
                    gc.enable()
