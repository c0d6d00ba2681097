"""The persistent parse cache: parse results, the last listing and scan, and the published snapshot on disk.

Versioned and keyed by the reader's code and settings; never trusted when corrupt or not private to
this user; written atomically, in the background, and never half-inherited by a fork.
"""

from __future__ import annotations

import array
import functools
import logging
import mmap
import operator
import os
import pickle
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .listing import FileEntry, FileStamp, ParseResult
from .model import Item, Problem, TopicDef

log = logging.getLogger(__name__)
# Part of every parse cache's key: bump it when the cached classes change shape. The code of the modules
# that make what is cached is hashed into the key too (scan.Scanner), so a changed reader never trusts
# results of the old one.
CACHE_VERSION = 5
#: What is stored: "entries" (path -> FileEntry) always; "listing", "last" (the last scan's items,
#: definitions and problems) and "snapshot" (the published snapshot's stored form) when known; and
#: "parts" on a write after a cold start (see ParseCache.save).
CacheState = dict[str, Any]
# The parts of a state written after the results, in the tail ("serves_last_good": the rule "last" and
# "snapshot" were made under, see scan.Scanner).
_TAIL_STATE = ("listing", "last", "snapshot", "serves_last_good")

_STORED = (Item, TopicDef, Problem)  # results the cache's tail refers to by position
_RUN = 8  # tuples and dicts of at least this many results are stored as one array of positions


def _reference(position: dict[int, int], obj: Any) -> Any:
    """The tail's persistent id of `obj`: a result's position, or for a tuple (or dict) of results, their
    positions as one array: a reference per item costs a Python call each when unpickled, an array of
    100k positions is turned back into results in a few milliseconds."""
    kind = type(obj)
    if kind in _STORED:
        return position.get(id(obj))
    if (kind is tuple or kind is dict) and len(obj) >= _RUN:
        try:
            positions = array.array("q", map(position.__getitem__, map(id, obj.values() if kind is dict else obj)))
        except KeyError:  # not all of them are results (a kept last good version, a definition, a string)
            return None
        if kind is tuple:
            return "tuple", positions.tobytes()
        return "dict", pickle.dumps(list(obj), protocol=pickle.HIGHEST_PROTOCOL), positions.tobytes()
    return None


def _load_reference(results: list[Any], reference: Any) -> Any:
    if type(reference) is int:
        return results[reference]
    if reference[0] == "tuple":
        positions = array.array("q")
        positions.frombytes(reference[1])
        # One C call per tuple (faster than map over __getitem__). Stored tuples have at least _RUN > 1
        # positions, so itemgetter returns a tuple, never a single item.
        return operator.itemgetter(*positions)(results)
    return _StoredDict(results, reference[1], reference[2])


class _StoredDict(Mapping):
    """A dict of results from the cache (the snapshot's items by id), built when first used: serving
    does not need it, only patching the snapshot after a change does (100k keys cost ~0.13 s)."""

    def __init__(self, results: list[Any], keys: bytes, positions: bytes):
        self._source: tuple[list[Any], bytes, bytes] | None = (results, keys, positions)
        self._dict: dict[str, Any] = {}

    def _built(self) -> dict[str, Any]:
        source = self._source
        if source is not None:  # two threads may both build it; they build the same dict
            results, keys, positions = source
            numbers = array.array("q")
            numbers.frombytes(positions)
            self._dict = dict(zip(pickle.loads(keys), map(results.__getitem__, numbers), strict=True))
            self._source = None
        return self._dict

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __reduce__(self):
        return dict, (self._built(),)  # saved again as a plain dict


class StoredEntries:
    """The entries of a loaded cache, built into FileEntry objects only when a scan needs them: a warm start
    whose first scan finds nothing changed never does (101k entries cost ~0.2 s)."""

    def __init__(self, rows: list[FileStamp], results: list[ParseResult], last_good: dict[str, Any]):
        self.rows, self.results, self.last_good = rows, results, last_good

    def __len__(self) -> int:
        return len(self.rows)

    def build(self) -> dict[str, FileEntry]:
        changed = self.last_good
        entries = {}
        for (rel, mtime_ns, size), result in zip(self.rows, self.results, strict=True):
            last_good = changed[rel] if rel in changed else _default_last_good(result)
            entries[rel] = FileEntry(mtime_ns, size, result, last_good)
        return entries


def _default_last_good(result: ParseResult) -> Item | TopicDef | None:
    """What an entry's last good version is unless an older one is kept: the result itself when good."""
    return result if isinstance(result, Item | TopicDef) else None


class ParseCache:
    """Parsed results on disk, keyed by path, mtime and size, so a restart reparses nothing.

    Safe to delete. Versioned: a cache from another version of the reader is ignored. Never trusted when
    corrupt: any error while loading means starting cold. It is a pickle, so it is only read when it lives
    in a directory and file that belong to this user and nobody else can write.
    """

    def __init__(self, path: str | os.PathLike[str], key: str):
        self.path = Path(path)
        self.key = key
        self._lock = threading.Lock()  # guards the pending state and timer
        self._write_lock = threading.Lock()  # one write at a time
        self._pending: CacheState | None = None
        self._timer: threading.Timer | None = None
        _watch_forks(self)

    # A fork (gunicorn starting or replacing a worker, a parse pool) waits for a write in progress: a
    # child would otherwise inherit the half-built pickle with no thread left to free it. The child
    # forgets a pending write, which belongs to the process that scheduled it, and its memory.

    def _before_fork(self) -> None:
        self._write_lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._write_lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock, self._write_lock = threading.Lock(), threading.Lock()
        self._pending = self._timer = None

    def load(self) -> CacheState:
        """The stored state ({} when there is none or it cannot be trusted): `entries` (path -> FileEntry),
        and when present the `listing` and `last` scan and the `snapshot` they gave."""
        try:
            st = self.path.stat()
            parent = self.path.parent.stat()
        except OSError:
            return {}
        uid = os.getuid()
        if st.st_uid != uid or parent.st_uid != uid or (st.st_mode | parent.st_mode) & 0o022:
            log.warning("parse cache %s is not private to this user; not using it", self.path)
            return {}
        try:
            # Mapped, not read: no 200 MB copy to fault in. Writers replace the file, never truncate it.
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as stream:
                return self._read(stream)
        except Exception as exc:  # empty, truncated, corrupt, or written by an incompatible version
            log.warning("parse cache %s unusable (%s); starting cold", self.path, type(exc).__name__)
            return {}

    # The file is a sequence of pickles: a header (key, and the (rel, mtime_ns, size) rows of each part),
    # one pickled list of results per part, in row order, and a tail (listing, last scan, snapshot, last
    # good versions that differ from the result) that refers to those results by their position instead
    # of repeating them. The parts of a cold start are the pickles its parsers already made.

    def _read(self, stream: mmap.mmap) -> CacheState:
        header = pickle.load(stream)
        if not (isinstance(header, dict) and header.get("key") == self.key):
            return {}
        results: list[Any] = []
        rows: list[FileStamp] = []
        for part in header["parts"]:
            loaded = pickle.load(stream)
            if len(loaded) != len(part):
                raise ValueError("part length")
            results += loaded
            rows += part
        tail_reader = pickle.Unpickler(stream)
        tail_reader.persistent_load = functools.partial(_load_reference, results)  # type: ignore[method-assign]
        tail = tail_reader.load()
        log.info("parse cache %s: %d files", self.path, len(rows))
        return {"entries": StoredEntries(rows, results, tail["last_good"]),
                **{name: tail[name] for name in _TAIL_STATE if name in tail}}

    def save(self, state: CacheState) -> None:
        """Write `state` (see load) atomically: readers see the old file or the new one, never half."""
        import tempfile

        entries: dict[str, FileEntry] = state["entries"]
        parts = state.get("parts")
        if parts is None:
            parts = [([(rel, e.mtime_ns, e.size) for rel, e in entries.items()],
                      pickle.dumps([e.result for e in entries.values()], protocol=pickle.HIGHEST_PROTOCOL))]
        position: dict[int, int] = {}  # id of a result -> its index in the parts, read back in that order
        index = 0
        for rows, _ in parts:
            for rel, _, _ in rows:
                result = entries[rel].result
                if isinstance(result, _STORED):
                    position[id(result)] = index
                index += 1
        tail: dict[str, Any] = {name: state[name] for name in _TAIL_STATE if name in state}
        tail["last_good"] = {rel: e.last_good for rel, e in entries.items()
                             if e.last_good is not _default_last_good(e.result)}
        started = time.perf_counter()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".parse-cache-")
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump({"key": self.key, "parts": [rows for rows, _ in parts]}, f,
                                protocol=pickle.HIGHEST_PROTOCOL)
                    for _, blob in parts:
                        f.write(blob)
                    tail_writer = pickle.Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
                    tail_writer.persistent_id = functools.partial(  # type: ignore[method-assign]
                        _reference, position)
                    tail_writer.dump(tail)
                os.replace(tmp, self.path)
                log.info("parse cache %s written: %d files in %.2f s", self.path, len(entries),
                         time.perf_counter() - started)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write parse cache %s: %s", self.path, exc)

    def save_later(self, state: CacheState, delay: float) -> None:
        """save() on a thread once `delay` seconds pass without a newer state: a burst of edits costs one
        write, and the write (seconds of pickling that holds the interpreter lock between 64 KB frames)
        happens when things are quiet, not while the next change is being published. Everything in
        `state` is immutable or no longer changed, so it is safe to pickle while scans go on. A forked
        writer would not share the lock, but touching every object's reference count copies the heap."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._pending = state
            self._timer = threading.Timer(delay, self.flush)
            self._timer.daemon = True  # a pending write is given up at exit; the old file stays valid
            self._timer.start()

    def flush(self) -> None:
        """Write a pending state now, if any (after any write already running)."""
        with self._write_lock:
            with self._lock:
                state, self._pending = self._pending, None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            if state is not None:
                self.save(state)


_CACHES: weakref.WeakSet[ParseCache] = weakref.WeakSet()  # the live caches of this process
_forking = threading.local()  # the caches whose write lock the fork this thread is making holds
_fork_hooks = False


def _watch_forks(cache: ParseCache) -> None:
    global _fork_hooks
    if not _fork_hooks:
        os.register_at_fork(before=_lock_writes, after_in_parent=_unlock_writes, after_in_child=_forget_writes)
        _fork_hooks = True
    _CACHES.add(cache)


def _lock_writes() -> None:
    _forking.held = list(_CACHES)
    for cache in _forking.held:
        cache._before_fork()


def _unlock_writes() -> None:
    for cache in getattr(_forking, "held", ()):
        cache._after_fork_in_parent()
    _forking.held = []


def _forget_writes() -> None:
    for cache in getattr(_forking, "held", ()):
        cache._after_fork_in_child()
    _forking.held = []
