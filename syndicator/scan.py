"""The incremental scan: which files changed since the last scan, their parse, and what the tree holds now.

`Scanner` remembers (mtime, size) per file and reparses only what changed; with a parse cache the
results survive restarts, so a warm start reparses nothing.
"""

from __future__ import annotations

import bisect
import operator
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import heap
from .cache import CACHE_VERSION, CacheState, ParseCache, StoredEntries
from .listing import FileEntry, FileStamp, Listing, ScanError, is_content_path, restamped, rows, walk
from .model import Item, Problem, TopicDef
from .parsing import Parsed, parse_many

__all__ = ["Scanner", "ScanError", "ScanResult", "ScanStats", "collect"]
PREWALK_MAX_AGE = 30.0  # seconds: a walk made while loading the cache serves the first scan, if that soon
STALE_NOTE = " (the last good version is still served)"  # ends the reason of a broken file's problem
PATCH_LIMIT = 200  # changed files; beyond this, rebuilding the scan's lists and the snapshot is as fast
#: What the tree holds, each sorted by path: served items (or their last good version), topic
#: definitions, problems.
Contents = tuple[tuple[Item, ...], tuple[TopicDef, ...], tuple[Problem, ...]]
#: One file's entry before and after a scan (None: the file was not there).
EntrySwap = tuple["FileEntry | None", "FileEntry | None"]


class Storable(Protocol):
    """A snapshot as the cache stores it (snapshot.Snapshot, which sits above this module)."""

    def stored_form(self) -> dict[str, Any]: ...


# The modules whose code decides what a parse gives and how the stored snapshot is shaped: a cache made
# by other code is not used.
_CACHED_CODE = ("model", "text", "urls", "frontmatter", "fastyaml", "body", "fields", "reader", "parsing",
                "listing", "cache", "scan", "snapshot")


@dataclass(frozen=True)
class ScanStats:
    seen: int = 0
    changed: int = 0
    parsed: int = 0
    removed: int = 0


@dataclass(frozen=True)
class ScanResult:
    """One pass over the directory: every usable item and definition, and every problem."""

    items: tuple[Item, ...]
    topic_defs: tuple[TopicDef, ...]
    problems: tuple[Problem, ...]
    stats: ScanStats
    seconds: float
    # Served items that went away and came in since the previous scan of the same Scanner (edits are
    # both); None when unknown (a first scan). Lets build_snapshot patch the previous snapshot.
    delta: tuple[tuple[Item, ...], tuple[Item, ...]] | None = None



def _parts(entry: FileEntry, last_good: bool = True) -> tuple[Item | None, TopicDef | None, Problem | None]:
    """What one file contributes to a scan: its item or definition and its problem. While it is broken,
    its last good version, when `last_good` (a server's rule); otherwise only the problem (the file as it
    is now)."""
    result = entry.result
    if isinstance(result, Problem):
        # An unreadable file (transient) is not known to be broken: its last good version stays.
        if result.stale and not last_good and not result.transient:
            return None, None, Problem(result.path, result.reason.removesuffix(STALE_NOTE), transient=result.transient)
        good = entry.last_good if last_good else None
        return (good if isinstance(good, Item) else None, good if isinstance(good, TopicDef) else None, result)
    return (result if isinstance(result, Item) else None, result if isinstance(result, TopicDef) else None, None)


def collect(entries: dict[str, FileEntry], last_good: bool = True) -> Contents:
    """Items, definitions and problems of all entries, each sorted by path (see _parts for `last_good`)."""
    lists: tuple[list, list, list] = ([], [], [])
    for rel in sorted(entries):
        for part, found in zip(lists, _parts(entries[rel], last_good), strict=True):
            if found is not None:
                part.append(found)
    return tuple(lists[0]), tuple(lists[1]), tuple(lists[2])


def recollect(last: Contents, swaps: list[EntrySwap], last_good: bool = True
              ) -> tuple[Contents, tuple[tuple[Item, ...], tuple[Item, ...]]]:
    """`collect` of the entries after `swaps` (old entry -> new entry, None for absent), computed from
    the previous result instead of all entries; also the (gone, came) served items."""
    lists: tuple[list[Any], list[Any], list[Any]] = (list(last[0]), list(last[1]), list(last[2]))
    gone: list[Item] = []
    came: list[Item] = []
    nothing = (None, None, None)
    for old, new in swaps:
        before = _parts(old, last_good) if old is not None else nothing
        after = _parts(new, last_good) if new is not None else nothing
        for parts, add in ((before, False), (after, True)):
            for part, found in zip(lists, parts, strict=True):
                if found is not None:
                    _put_by_path(part, found, add)
        if before[0] is not after[0]:  # the served item changed (an edit is both gone and came)
            if before[0] is not None:
                gone.append(before[0])
            if after[0] is not None:
                came.append(after[0])
    items, defs, problems = lists
    return (tuple(items), tuple(defs), tuple(problems)), (tuple(gone), tuple(came))


def _put_by_path(objects: list, obj, add: bool) -> None:
    """Insert `obj` into, or remove the object with its path from, a list sorted by path (paths are unique
    in each list; a problem _parts rebuilds is another object with the same path)."""
    at = bisect.bisect_left(objects, obj.path, key=_PATH)
    if add:
        objects.insert(at, obj)
    elif at < len(objects) and objects[at].path == obj.path:
        del objects[at]


_PATH = operator.attrgetter("path")


class Scanner:
    """Walks a content directory, reparsing only files whose (mtime, size) changed since last time.

    With a `cache_file`, the parsed results survive restarts: a warm start reparses nothing.
    """

    def __init__(self, root: str | os.PathLike[str], *, site_url: str = "", max_file_bytes: int = 1_048_576,
                 workers: int = 1, cache_file: str | os.PathLike[str] | None = None, autosave: bool = True,
                 last_good: bool = True):
        self.root = Path(root)
        self.site_url = site_url
        self.max_file_bytes = max_file_bytes
        self.workers = workers
        # With autosave, every scan that changed something writes the cache before returning; a service
        # turns it off and calls save() after publishing, which writes in the background with the snapshot.
        self.autosave = autosave
        # A broken file that was good contributes its last good version (a server keeps serving it) or,
        # without `last_good`, only its problem (check, and an export, judge the files as they are now).
        # Entries remember the last good version either way, so the cache serves both kinds of reader.
        self.last_good = last_good
        self.cache = ParseCache(cache_file, self._cache_key()) if cache_file else None
        # A warm start walks the directory in a forked process while this one unpickles the cache: the
        # two take about as long as each other at 100k files, and there are two cores.
        self._prewalk = None
        self._prewalk_started = time.monotonic()
        if self.cache is not None and self.cache.path.is_file() and workers > 1:
            from .parallel import fork_call

            self._prewalk = fork_call(walk, str(self.root))
        with heap.paused():
            stored = self.cache.load() if self.cache else {}
        if stored.get("serves_last_good", True) != last_good:
            # The stored scan and snapshot were made under the other rule: only the entries are shared.
            stored = {"entries": stored["entries"]} if "entries" in stored else {}
        self._built_entries: dict[str, FileEntry] = {}
        self._stored_entries: StoredEntries | None = stored.get("entries")
        self._last: Contents | None = stored.get("last")
        # The last walk, when it was fully taken in: (prefix, names, stamps) per directory.
        self._listing: Listing | None = stored.get("listing")
        self._restored: dict[str, Any] | None = stored.get("snapshot")
        self._parts: list[tuple[list, bytes]] | None = None  # see _cache_parts
        self.parse_count = 0  # total files parsed since creation; tests use it to prove incrementality

    @property
    def _entries(self) -> dict[str, FileEntry]:
        """path -> FileEntry of every file the last scan saw."""
        if self._stored_entries is not None:
            self._built_entries, self._stored_entries = self._stored_entries.build(), None
        return self._built_entries

    @_entries.setter
    def _entries(self, entries: dict[str, FileEntry]) -> None:
        self._built_entries, self._stored_entries = entries, None

    def source_stamps(self) -> tuple[str, Callable[[Item], str]]:
        """What the parse cache trusts: (the reader's code and settings, an item's path, mtime and size);
        equal stamps, equal items. An item whose file the last scan did not see gets a stamp of its own."""
        entries = self._entries

        def stamp(item: Item) -> str:
            entry = entries.get(item.path)
            return f"{item.path}|{entry.mtime_ns}|{entry.size}" if entry else f"{id(item)}|{os.urandom(8).hex()}"
        return self._cache_key(), stamp

    def _entry_count(self) -> int:
        return len(self._stored_entries if self._stored_entries is not None else self._built_entries)

    def _cache_key(self) -> str:
        """The code that made the results and the settings they depend on: a cache made with others is
        not used."""
        import hashlib

        code = hashlib.sha256()
        for name in _CACHED_CODE:
            code.update(Path(__file__).with_name(f"{name}.py").read_bytes())
        reader = code.hexdigest()[:16]
        return f"{CACHE_VERSION}|{reader}|{os.path.realpath(self.root)}|{self.site_url}|{self.max_file_bytes}"

    def _walk(self) -> Listing:
        prewalked, self._prewalk = self._prewalk, None
        # Only for the scan right after loading the cache; a walk older than that is walked again.
        if prewalked is not None and time.monotonic() - self._prewalk_started < PREWALK_MAX_AGE:
            try:
                return prewalked.result()
            except Exception:  # noqa: BLE001 - the walk below raises what is wrong, with its own message
                pass
        return walk(self.root)

    def scan(self, paths: Iterable[str] | None = None) -> ScanResult:
        """One incremental pass. Raises ScanError only when the directory itself is unusable.

        `paths` (relative to the root), when given, are the only files that may have changed, as
        filesystem events report them: only those are looked at, not the whole tree.
        """
        with heap.paused():
            return self._scan(paths)

    def _scan(self, paths: Iterable[str] | None) -> ScanResult:
        start = time.perf_counter()
        found = self._look_at(paths) if paths is not None and self._last is not None else None
        if found is not None:
            todo, removed = found
            seen = dict(self._entries)
            gone = [seen.pop(rel) for rel in removed]
            # Files edited in place keep the listing valid with their new stamps; after anything else the
            # next full walk compares every file once, then is fast again.
            listing = restamped(self._listing, todo) if self._listing is not None and not removed else None
        else:
            listing = self._walk()
            # A listing that differs does not discard the stored snapshot: restored_snapshot() takes it only when
            # this scan finds every file as it was, which also covers a cache stored without a listing.
            if listing == self._listing and self._last is not None:
                # Nothing changed (the common case, which must cost little more than the walk itself): one
                # comparison of two lists in C instead of a dictionary lookup per file.
                stats = ScanStats(seen=self._entry_count(), changed=0, parsed=0, removed=0)
                return ScanResult(*self._last, stats, time.perf_counter() - start)
            in_place = self._changed_in_place(listing)
            if in_place is not None:  # the same files as last time, a few of them changed
                todo, seen, gone = in_place, dict(self._entries), []
            else:
                seen, todo, gone = self._compare(listing)
        if not todo and not gone and self._last is not None:
            if listing is not None:
                self._listing = listing  # same files, listed in another order
            stats = ScanStats(seen=len(seen), changed=0, parsed=0, removed=0)
            return ScanResult(*self._last, stats, time.perf_counter() - start)
        entries = self._entries
        parsed = parse_many(str(self.root), [rel for rel, _, _ in todo], self.site_url, self.max_file_bytes,
                            self.workers, pack=self.cache is not None)
        results = parsed.results
        self.parse_count += len(todo)
        retry = False
        swaps: list[EntrySwap] = [(old, None) for old in gone]
        for (rel, mtime_ns, size), result in zip(todo, results, strict=True):
            old = entries.get(rel)
            last_good = old.last_good if old else None
            if isinstance(result, Item | TopicDef):
                last_good = result
            elif result is None:
                last_good = None  # a YAML file that is no topic definition (any more) has no good version
            elif isinstance(result, Problem) and last_good is not None:
                result = Problem(rel, result.reason + STALE_NOTE, stale=True,
                                 transient=result.transient)
            # An unreadable file is remembered with an impossible mtime, so the next scan tries it again.
            if isinstance(result, Problem) and result.transient:
                mtime_ns, retry = -1, True
            seen[rel] = new = FileEntry(mtime_ns, size, result, last_good)
            swaps.append((old, new))
        delta = None
        if self._last is not None and len(swaps) <= PATCH_LIMIT:
            last, delta = recollect(self._last, swaps, self.last_good)
        else:
            last = collect(seen, self.last_good)
        self._entries, self._last = seen, last
        self._parts = self._cache_parts(parsed, todo) if parsed.parts is not None and len(todo) == len(seen) else None
        # After a retryable failure the listing must not match, so the next scan looks at the entries.
        self._listing = None if retry else listing
        if self.autosave and self.cache:
            self.cache.save(self._state(None))
        stats = ScanStats(seen=len(seen), changed=len(todo), parsed=len(todo), removed=len(gone))
        return ScanResult(*self._last, stats, time.perf_counter() - start, delta=delta)

    def _look_at(self, paths: Iterable[str]) -> tuple[list[FileStamp], list[str]] | None:
        """(changed files, removed files) among `paths`; None when only a full walk can tell (a
        directory or a symbolic link changed, or too many paths)."""
        paths = set(paths)
        if len(paths) > PATCH_LIMIT:
            return None
        todo: list[FileStamp] = []
        gone: list[str] = []
        for rel in sorted(paths):
            parts = rel.split("/")
            if rel.startswith("/") or ".." in parts:
                return None  # outside the root as named: only the walk knows what it stands for
            # The walk's rules: hidden and editor names are skipped, as are directories named like backups.
            # Directory events ask for a full walk before they get here (Watcher), so a name that is not a
            # content file (an editor's probe file, a swap file) can be passed over.
            if not is_content_path(parts):
                continue
            if rel not in self._entries:
                # A new file (or one known under another path, through a linked directory): the walk
                # decides, with its rules for links and duplicates.
                return None
            try:
                st = os.lstat(os.path.join(self.root, rel))
            except FileNotFoundError:
                gone.append(rel)
                continue
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None  # a symbolic link or a directory named like a file: the walk knows the rules
            old = self._entries[rel]
            if old.mtime_ns != st.st_mtime_ns or old.size != st.st_size:
                todo.append((rel, st.st_mtime_ns, st.st_size))
        return todo, gone

    def _changed_in_place(self, listing: Listing
                          ) -> list[FileStamp] | None:
        """The changed files when `listing` has exactly the files of the last one; None otherwise."""
        last = self._listing
        if last is None or len(last) != len(listing):
            return None
        todo: list[FileStamp] = []
        for (prefix, names, stamps), (old_prefix, old_names, old_stamps) in zip(listing, last, strict=True):
            if prefix != old_prefix or names != old_names:
                return None
            if stamps != old_stamps:
                todo.extend((prefix + names[i // 2], stamps[i], stamps[i + 1])
                            for i in range(0, len(stamps), 2)
                            if stamps[i] != old_stamps[i] or stamps[i + 1] != old_stamps[i + 1])
        return todo

    def _compare(self, listing) -> tuple[dict[str, FileEntry], list[FileStamp], list[FileEntry]]:
        """Every file against what is known: (unchanged entries, new or changed files, removed entries)."""
        entries = self._entries
        seen: dict[str, FileEntry] = {}
        todo: list[FileStamp] = []
        listed = set()
        for row in rows(listing):
            rel, mtime_ns, size = row
            listed.add(rel)
            old = entries.get(rel)
            if old is not None and old.mtime_ns == mtime_ns and old.size == size:
                seen[rel] = old
            else:
                todo.append(row)
        gone = [entry for rel, entry in entries.items() if rel not in listed]
        return seen, todo, gone

    def _cache_parts(self, parsed: Parsed, todo: list[FileStamp]) -> list[tuple[list, bytes]] | None:
        """The parse's pickled chunks as parse-cache parts ((rel, mtime_ns, size) rows, pickle), when the
        entries hold exactly the objects those pickles were made from (a scan that parsed everything)."""
        parts = []
        for start, end, blob in parsed.parts or ():
            rows = []
            for index in range(start, end):
                rel = todo[index][0]
                entry = self._entries[rel]
                if entry.result is not parsed.results[index]:
                    return None
                rows.append((rel, entry.mtime_ns, entry.size))
            parts.append((rows, blob))
        return parts

    def _state(self, stored_snapshot: Mapping[str, Any] | None) -> CacheState:
        state: CacheState = {"entries": self._entries, "listing": self._listing, "last": self._last,
                             "serves_last_good": self.last_good}
        if self._parts is not None:
            # Pickled during the parse: written once, then dropped (they are as big as the items).
            state["parts"], self._parts = self._parts, None
        if stored_snapshot is not None:
            state["snapshot"] = stored_snapshot
        return state

    def save(self, snapshot: Storable, delay: float = 0.0) -> None:
        """Write the cache together with the snapshot built from this scanner's last scan, `delay`
        seconds later on a thread (see ParseCache.save_later), so the rescan does not wait for it."""
        if self.cache is not None:
            self.cache.save_later(self._state(snapshot.stored_form()), delay)

    def stored_snapshot(self, scan: ScanResult) -> Mapping[str, Any] | None:
        """The snapshot stored with the cache (its stored form), when `scan` (the first since loading it)
        found the directory exactly as it was then; a warm start publishes it without indexing 100k
        items again (`snapshot.restored_snapshot`). Given once: later calls return None."""
        stored, self._restored = self._restored, None
        if stored is None or scan.stats.changed or scan.stats.removed:
            return None
        return stored
