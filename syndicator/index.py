"""Incremental scan of the content directory, the topic index, and the published `Snapshot`.

`Scanner` remembers (mtime, size) per file and reparses only what changed; `build_snapshot` turns a
scan into an immutable `Snapshot`; `Publisher` holds the one snapshot the web layer serves and swaps
it whole, so a request never sees half a rescan.
"""

from __future__ import annotations

import array
import datetime as dt
import functools
import logging
import mmap
import operator
import os
import pickle
import stat
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import heap
from .content import Item, Problem, TopicDef, read_item, read_topic, slugify

log = logging.getLogger(__name__)
RESERVED_SLUGS = frozenset({"all"})
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
IGNORED_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".tmp", ".part", ".bak", ".orig")
PREWALK_MAX_AGE = 30.0  # seconds: a walk made while loading the cache serves the first scan, if that soon
PATCH_LIMIT = 200  # changed files; beyond this, rebuilding the scan's lists and the snapshot is as fast
PARALLEL_THRESHOLD = 400  # below this many files to parse, starting processes costs more than it saves
# Part of every parse cache's key: bump it when the cached classes change shape. The reader's own source
# is hashed into the key too (ParseCache), so a changed reader never trusts results of the old one.
CACHE_VERSION = 4


class ScanError(Exception):
    """The content directory as a whole could not be scanned (missing, unreadable)."""


@dataclass(frozen=True)
class Topic:
    slug: str
    name: str
    items: tuple[Item, ...]  # newest first, drafts and future items excluded
    definition: TopicDef | None = None

    @property
    def description(self) -> str:
        return self.definition.description if self.definition else ""

    @property
    def image(self) -> str:
        if self.definition and self.definition.image:
            return self.definition.image
        for item in self.items:
            if item.images:
                return item.images[0].url
        return ""


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


@dataclass(frozen=True)
class Snapshot:
    """Everything the web layer serves, immutable once published."""

    topics: MappingProxyType  # slug -> Topic, sorted by slug
    all_items: tuple[Item, ...]  # newest first
    problems: tuple[Problem, ...]
    scan_seconds: float
    stats: ScanStats
    next_due: dt.datetime | None = None  # earliest future item; rebuild once it is due
    # Newest item date of the whole site; feeds without items use it, so output stays stable.
    newest: dt.datetime = EPOCH
    # Rendered documents, filled lazily by the documents module; a memo, not part of the value.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # What build_snapshot needs to patch this snapshot for a few changed items (see _Basis).
    basis: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Basis:
    defs: tuple[TopicDef, ...]  # the definitions the snapshot was built with
    slug_of: dict[str, str]  # topic name as written -> slug
    by_id: Mapping[str, Item]  # every item by id, served or not (drafts, future)
    clean: bool  # no problems of its own (duplicate ids, slug collisions) that a change could resolve


@dataclass
class _Entry:
    mtime_ns: int
    size: int
    result: Any  # Item | TopicDef | Problem | None
    last_good: Any = None


_IGNORED_PREFIXES = (".", "#")
_CONTENT_SUFFIXES = (".md", ".yaml", ".yml")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def parse_file(root: str, rel: str, site_url: str, max_bytes: int) -> Any:
    """Read and parse one file: Item, TopicDef, Problem, or None (a YAML file that is not a topic)."""
    try:
        raw = read_bounded(os.path.join(root, rel), max_bytes)
        if isinstance(raw, int):
            return Problem(rel, f"file is {raw:,} bytes, over the {max_bytes:,}-byte limit (max_file_bytes)")
    except OSError as exc:
        return Problem(rel, f"cannot read file: {exc.strerror or exc}", transient=True)
    try:
        if rel.endswith(".md"):
            return read_item(raw, rel, site_url=site_url, max_bytes=max_bytes)
        return read_topic(raw, rel, site_url=site_url)
    except Exception as exc:  # a reader bug must not take the scan down; report it like bad input
        log.exception("unexpected error reading %s", rel)
        return Problem(rel, f"internal error while reading: {type(exc).__name__}: {exc}")


READ_CHUNK = 65_536


def read_bounded(path: str, limit: int) -> bytes | int:
    """The file's bytes, or its size when that is over `limit` (only `limit` + 1 bytes are ever read).

    Read in 64 KB pieces: `f.read(limit + 1)` allocates the whole megabyte up front for every file,
    which cost ~35 µs of a ~2 KB file's ~45 µs read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            return os.fstat(fd).st_size
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse_chunk(options: tuple[str, str, int, int | None], rels: list[str]) -> tuple[list[Any] | None, bytes | None]:
    """Parse `rels`: (results, None), or with a `packer` pid, (results or None, the results pickled).

    The pickle is both what crosses the pipe from a forked parser (results come back as None there) and
    a part of the parse cache as it will be written, so a cold start does not pickle 100k items twice.
    The packer pickles its own chunks here too, while the other processes parse, rather than in the
    cache write, which one core does alone before the server forks its workers."""
    root, site_url, max_bytes, packer = options
    results = [parse_file(root, rel, site_url, max_bytes) for rel in rels]
    if packer is None:
        return results, None
    blob = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    return (results if os.getpid() == packer else None), blob


@dataclass(frozen=True)
class Parsed:
    """parse_many's answer: a result per file, and when asked for, the same results pickled by chunk as
    (first index, end index, pickle)."""

    results: list[Any]
    parts: list[tuple[int, int, bytes]] | None = None


def parse_many(root: str, rels: list[str], site_url: str, max_bytes: int, workers: int,
               pack: bool = False) -> Parsed:
    """Parse files, in `workers` processes when there are enough of them to pay for the processes.

    YAML parsing is CPU-bound and holds the GIL, so threads would not help; processes use every core.
    With `pack` (a parse cache will be written), each chunk's results also come pickled.
    """
    if workers <= 1 or len(rels) < PARALLEL_THRESHOLD:
        return Parsed(_parse_chunk((root, site_url, max_bytes, None), rels)[0])
    from .parallel import fork_imap

    # Chunks shrink as the work runs out (each a sixteenth of what is left per process, at least 50
    # files): the last ones are small, so no process idles long waiting for another's last chunk, and
    # there are few chunks in all (~160 for 100k files), each one pickle round trip.
    chunks = []
    start = 0
    while start < len(rels):
        size = max(50, (len(rels) - start) // (workers * 16))
        chunks.append(rels[start:start + size])
        start += size
    options = (root, site_url, max_bytes, os.getpid() if pack else None)
    parsed = Parsed([], [] if pack else None)
    for results, blob in fork_imap(_parse_chunk, chunks, options, workers):
        if results is None:
            results = pickle.loads(blob)
        if pack:
            parsed.parts.append((len(parsed.results), len(parsed.results) + len(results), blob))
        parsed.results.extend(results)
    return parsed


def _read_dir(entries: Iterator[os.DirEntry], directory: str, names: list[str], stamps: list[int],
              real_root: str) -> list[tuple[str, str]]:
    """Append each content file's name and (mtime_ns, size) of one directory; return its subdirectories.

    Entries are iterated, not listed: each entry and the stat it caches is freed before the next, which
    measurably beats holding 100k of them. d_type answers the type checks without a system call. The
    entries come from an open directory, so their stats look up one name, not the whole path again.
    """
    subdirs = []
    for entry in entries:
        name = entry.name
        try:
            if entry.is_file(follow_symlinks=False):
                if name.endswith(_CONTENT_SUFFIXES) and not name.startswith(_IGNORED_PREFIXES):
                    st = entry.stat(follow_symlinks=False)
                    names.append(name)
                    stamps += st.st_mtime_ns, st.st_size
                continue
            if name.startswith(_IGNORED_PREFIXES) or name.endswith(IGNORED_SUFFIXES):
                continue
            path = os.path.join(directory, name)
            if entry.is_symlink():
                # Follow links only while they stay inside the content directory.
                target = os.path.realpath(path)
                if os.path.commonpath([real_root, target]) != real_root:
                    continue
                if entry.is_file():
                    if name.endswith(_CONTENT_SUFFIXES):
                        st = entry.stat()
                        names.append(name)
                        stamps += st.st_mtime_ns, st.st_size
                    continue
            if entry.is_dir():
                subdirs.append((path, name))
        except OSError:
            continue  # vanished between listing and stat: it is simply not there
    return subdirs


def _parts(entry: _Entry) -> tuple[Item | None, TopicDef | None, Problem | None]:
    """What one file contributes to a scan: its item or definition (the current version, else the last
    good one while it is broken) and its problem."""
    result = entry.result
    problem = result if isinstance(result, Problem) else None
    good = result if isinstance(result, Item | TopicDef) else entry.last_good
    return (good if isinstance(good, Item) else None, good if isinstance(good, TopicDef) else None, problem)


def _collect(entries: dict[str, _Entry]) -> tuple[tuple[Item, ...], tuple[TopicDef, ...], tuple[Problem, ...]]:
    """Items, definitions and problems of all entries, each sorted by path."""
    lists: tuple[list, list, list] = ([], [], [])
    for rel in sorted(entries):
        for part, found in zip(lists, _parts(entries[rel]), strict=True):
            if found is not None:
                part.append(found)
    return tuple(lists[0]), tuple(lists[1]), tuple(lists[2])


def _patch_last(last, swaps: list[tuple[_Entry | None, _Entry | None]]):
    """`_collect` of the entries after `swaps` (old entry -> new entry, None for absent), computed from
    the previous result instead of all entries; also the (gone, came) served items."""
    lists = [list(part) for part in last]
    gone: list[Item] = []
    came: list[Item] = []
    nothing = (None, None, None)
    for old, new in swaps:
        before = _parts(old) if old is not None else nothing
        after = _parts(new) if new is not None else nothing
        for parts, add in ((before, False), (after, True)):
            for part, found in zip(lists, parts, strict=True):
                if found is not None:
                    _put_by_path(part, found, add)
        if before[0] is not after[0]:  # the served item changed (an edit is both gone and came)
            if before[0] is not None:
                gone.append(before[0])
            if after[0] is not None:
                came.append(after[0])
    return tuple(tuple(part) for part in lists), (tuple(gone), tuple(came))


def _put_by_path(objects: list, obj, add: bool) -> None:
    """Insert `obj` into, or remove it from, a list sorted by path (paths are unique in each list)."""
    import bisect

    at = bisect.bisect_left(objects, obj.path, key=_PATH)
    if add:
        objects.insert(at, obj)
    elif at < len(objects) and objects[at] is obj:
        del objects[at]


_PATH = operator.attrgetter("path")


def walk(root: str | os.PathLike[str]) -> list[tuple[str, list[str], list[int]]]:
    """Per directory: (path prefix, file names, [mtime_ns, size, mtime_ns, size, ...]) of its content
    files, in a stable order. One stat per file; no per-file objects beyond what stat makes, because
    a no-change rescan is this walk plus one comparison with the previous one."""
    try:
        real_root = os.path.realpath(root)
        if not os.path.isdir(real_root):
            raise ScanError(f"content directory {root} does not exist or is not a directory")
    except OSError as exc:
        raise ScanError(f"content directory {root}: {exc.strerror}") from None
    listing: list[tuple[str, list[str], list[int]]] = []
    visited = {real_root}
    stack = [(real_root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            fd = os.open(directory, _DIRECTORY_FLAGS)
        except OSError as exc:
            if not prefix:
                raise ScanError(f"content directory {root}: {exc.strerror}") from None
            log.warning("cannot list %s: %s", prefix, exc.strerror)
            continue
        names: list[str] = []
        stamps: list[int] = []
        listing.append((prefix, names, stamps))
        try:
            with os.scandir(fd) as entries:
                subdirs = _read_dir(entries, directory, names, stamps, real_root)
        except OSError as exc:  # the directory went away while being read
            log.warning("cannot list %s: %s", prefix, exc.strerror)
            continue
        finally:
            os.close(fd)
        for path, name in subdirs:
            real = os.path.realpath(path)
            if real not in visited:
                visited.add(real)
                stack.append((path, prefix + name + "/"))
    return listing


def _restamped(listing: list[tuple[str, list[str], list[int]]], changes: list[tuple[str, int, int]]
               ) -> list[tuple[str, list[str], list[int]]] | None:
    """`listing` with the new (mtime_ns, size) of files it holds; None when one of them is not in it."""
    listing = list(listing)  # the old one may be part of a cache state waiting to be written
    where = {prefix: i for i, (prefix, _, _) in enumerate(listing)}
    copied = set()  # directories whose stamps are already this listing's own copy
    for rel, mtime_ns, size in changes:
        directory, _, name = rel.rpartition("/")
        i = where.get(directory + "/" if directory else "")
        if i is None:
            return None
        prefix, names, stamps = listing[i]
        try:
            k = 2 * names.index(name)
        except ValueError:
            return None
        if i not in copied:
            stamps = list(stamps)
            listing[i] = (prefix, names, stamps)
            copied.add(i)
        stamps[k:k + 2] = mtime_ns, size
    return listing


class Scanner:
    """Walks a content directory, reparsing only files whose (mtime, size) changed since last time.

    With a `cache_file`, the parsed results survive restarts: a warm start reparses nothing.
    """

    def __init__(self, root: str | os.PathLike[str], *, site_url: str = "", max_file_bytes: int = 1_048_576,
                 workers: int = 1, cache_file: str | os.PathLike[str] | None = None, autosave: bool = True):
        self.root = Path(root)
        self.site_url = site_url
        self.max_file_bytes = max_file_bytes
        self.workers = workers
        # With autosave, every scan that changed something writes the cache before returning; a service
        # turns it off and calls save() after publishing, which writes in the background with the snapshot.
        self.autosave = autosave
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
        self._built_entries: dict[str, _Entry] = {}
        self._stored_entries: _StoredEntries | None = stored.get("entries")
        self._last: tuple[tuple[Item, ...], tuple[TopicDef, ...], tuple[Problem, ...]] | None = stored.get("last")
        # The last walk, when it was fully taken in: (prefix, names, stamps) per directory.
        self._listing: list[tuple[str, list[str], list[int]]] | None = stored.get("listing")
        self._restored: dict[str, Any] | None = stored.get("snapshot")
        self._parts: list[tuple[list, bytes]] | None = None  # see _cache_parts
        self.parse_count = 0  # total files parsed since creation; tests use it to prove incrementality

    @property
    def _entries(self) -> dict[str, _Entry]:
        """path -> _Entry of every file the last scan saw."""
        if self._stored_entries is not None:
            self._built_entries, self._stored_entries = self._stored_entries.build(), None
        return self._built_entries

    @_entries.setter
    def _entries(self, entries: dict[str, _Entry]) -> None:
        self._built_entries, self._stored_entries = entries, None

    def _entry_count(self) -> int:
        return len(self._stored_entries if self._stored_entries is not None else self._built_entries)

    def _cache_key(self) -> str:
        # Results depend on the reader's code (and the stored snapshot on this module's) and these
        # settings; a cache made with others is not used.
        import hashlib

        from . import content, fastyaml

        code = hashlib.sha256(b"".join(Path(module.__file__).read_bytes() for module in (content, fastyaml))
                              + Path(__file__).read_bytes())
        reader = code.hexdigest()[:16]
        return f"{CACHE_VERSION}|{reader}|{os.path.realpath(self.root)}|{self.site_url}|{self.max_file_bytes}"

    def _walk(self) -> list[tuple[str, list[str], list[int]]]:
        prewalked, self._prewalk = self._prewalk, None
        # Only for the scan right after loading the cache; a walk older than that is walked again.
        if prewalked is not None and time.monotonic() - self._prewalk_started < PREWALK_MAX_AGE:
            try:
                return prewalked.result()
            except Exception:  # noqa: BLE001 - the walk below raises what is wrong, with its own message
                pass
        return walk(self.root)

    @staticmethod
    def _rows(listing: list[tuple[str, list[str], list[int]]]) -> Iterator[tuple[str, int, int]]:
        for prefix, names, stamps in listing:
            for i, name in enumerate(names):
                yield prefix + name, stamps[2 * i], stamps[2 * i + 1]

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
            listing = _restamped(self._listing, todo) if self._listing is not None and not removed else None
        else:
            listing = self._walk()
            # A listing that differs does not discard the stored snapshot: restored() takes it only when
            # this scan finds every file as it was, which also covers a cache stored without a listing.
            if listing == self._listing and self._last is not None:
                # Nothing changed (the common case, which must cost little more than the walk itself): one
                # comparison of two lists in C instead of a dictionary lookup per file.
                stats = ScanStats(seen=self._entry_count(), changed=0, parsed=0, removed=0)
                return ScanResult(*self._last, stats, time.perf_counter() - start)
            todo = self._changed_in_place(listing)
            if todo is not None:  # the same files as last time, a few of them changed
                seen, gone = dict(self._entries), []
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
        swaps: list[tuple[_Entry | None, _Entry | None]] = [(old, None) for old in gone]
        for (rel, mtime_ns, size), result in zip(todo, results, strict=True):
            old = entries.get(rel)
            last_good = old.last_good if old else None
            if isinstance(result, Item | TopicDef):
                last_good = result
            elif isinstance(result, Problem) and last_good is not None:
                result = Problem(rel, result.reason + " (the last good version is still served)", stale=True,
                                 transient=result.transient)
            # An unreadable file is remembered with an impossible mtime, so the next scan tries it again.
            if isinstance(result, Problem) and result.transient:
                mtime_ns, retry = -1, True
            seen[rel] = new = _Entry(mtime_ns, size, result, last_good)
            swaps.append((old, new))
        delta = None
        if self._last is not None and len(swaps) <= PATCH_LIMIT:
            last, delta = _patch_last(self._last, swaps)
        else:
            last = _collect(seen)
        self._entries, self._last = seen, last
        self._parts = self._cache_parts(parsed, todo) if parsed.parts is not None and len(todo) == len(seen) else None
        # After a retryable failure the listing must not match, so the next scan looks at the entries.
        self._listing = None if retry else listing
        if self.autosave and self.cache:
            self.cache.save(self._state(None))
        stats = ScanStats(seen=len(seen), changed=len(todo), parsed=len(todo), removed=len(gone))
        return ScanResult(*self._last, stats, time.perf_counter() - start, delta=delta)

    def _look_at(self, paths: Iterable[str]) -> tuple[list[tuple[str, int, int]], list[str]] | None:
        """(changed files, removed files) among `paths`; None when only a full walk can tell (a
        directory or a symbolic link changed, or too many paths)."""
        paths = set(paths)
        if len(paths) > PATCH_LIMIT:
            return None
        todo: list[tuple[str, int, int]] = []
        gone: list[str] = []
        for rel in sorted(paths):
            parts = rel.split("/")
            if rel.startswith("/") or ".." in parts:
                return None  # outside the root as named: only the walk knows what it stands for
            # The walk's rules: hidden and editor names are skipped, as are directories named like backups.
            # Directory events ask for a full walk before they get here (Watcher), so a name that is not a
            # content file (an editor's probe file, a swap file) can be passed over.
            if (any(p.startswith(_IGNORED_PREFIXES) for p in parts)
                    or any(p.endswith(IGNORED_SUFFIXES) for p in parts[:-1])
                    or not parts[-1].endswith(_CONTENT_SUFFIXES)):
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

    def _changed_in_place(self, listing: list[tuple[str, list[str], list[int]]]
                          ) -> list[tuple[str, int, int]] | None:
        """The changed files when `listing` has exactly the files of the last one; None otherwise."""
        last = self._listing
        if last is None or len(last) != len(listing):
            return None
        todo = []
        for (prefix, names, stamps), (old_prefix, old_names, old_stamps) in zip(listing, last, strict=True):
            if prefix != old_prefix or names != old_names:
                return None
            if stamps != old_stamps:
                todo.extend((prefix + names[i // 2], stamps[i], stamps[i + 1])
                            for i in range(0, len(stamps), 2)
                            if stamps[i] != old_stamps[i] or stamps[i + 1] != old_stamps[i + 1])
        return todo

    def _compare(self, listing) -> tuple[dict[str, _Entry], list[tuple[str, int, int]], list[_Entry]]:
        """Every file against what is known: (unchanged entries, new or changed files, removed entries)."""
        entries = self._entries
        seen: dict[str, _Entry] = {}
        todo: list[tuple[str, int, int]] = []
        listed = set()
        for row in self._rows(listing):
            rel, mtime_ns, size = row
            listed.add(rel)
            old = entries.get(rel)
            if old is not None and old.mtime_ns == mtime_ns and old.size == size:
                seen[rel] = old
            else:
                todo.append(row)
        gone = [entry for rel, entry in entries.items() if rel not in listed]
        return seen, todo, gone

    def _cache_parts(self, parsed: Parsed, todo: list[tuple[str, int, int]]) -> list[tuple[list, bytes]] | None:
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

    def _state(self, snapshot: Snapshot | None) -> dict[str, Any]:
        state: dict[str, Any] = {"entries": self._entries, "listing": self._listing, "last": self._last}
        if self._parts is not None:
            # Pickled during the parse: written once, then dropped (they are as big as the items).
            state["parts"], self._parts = self._parts, None
        if snapshot is not None:
            state["snapshot"] = {"topics": dict(snapshot.topics), "all_items": snapshot.all_items,
                                 "problems": snapshot.problems, "next_due": snapshot.next_due,
                                 "newest": snapshot.newest, "basis": snapshot.basis}
        return state

    def save(self, snapshot: Snapshot, delay: float = 0.0) -> None:
        """Write the cache together with the snapshot built from this scanner's last scan, `delay`
        seconds later on a thread (see ParseCache.save_later), so the rescan does not wait for it."""
        if self.cache is not None:
            self.cache.save_later(self._state(snapshot), delay)

    def restored(self, scan: ScanResult) -> Snapshot | None:
        """The snapshot stored with the cache, when `scan` (the first since loading it) found the directory
        exactly as it was then; a warm start publishes it without indexing 100k items again."""
        stored, self._restored = self._restored, None
        if stored is None or scan.stats.changed or scan.stats.removed:
            return None
        return Snapshot(topics=MappingProxyType(stored["topics"]), all_items=stored["all_items"],
                        problems=stored["problems"], scan_seconds=scan.seconds, stats=scan.stats,
                        next_due=stored["next_due"], newest=stored["newest"], basis=stored["basis"])


_STORED = (Item, TopicDef, Problem)  # results the cache's tail refers to by position
_RUN = 8  # tuples and dicts of at least this many results are stored as one array of positions


def _reference(position: dict[int, int], obj: Any) -> Any:
    """The tail's persistent id of `obj`: a result's position, or for a tuple (or dict) of results, their
    positions as one array. Unpickling a reference per item cost ~0.8 µs (a call each); an array of
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
        # One C call per tuple; map() over __getitem__ was 30-40% slower for the snapshot's 372k positions
        # (~0.07 s of a 100k-item warm start). Stored tuples have at least _RUN > 1 positions, so
        # itemgetter returns a tuple, never a single item.
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


class _StoredEntries:
    """The entries of a loaded cache, built into _Entry objects only when a scan needs them: a warm start
    whose first scan finds nothing changed never does (101k entries cost ~0.2 s)."""

    def __init__(self, rows: list[tuple[str, int, int]], results: list[Any], last_good: dict[str, Any]):
        self.rows, self.results, self.last_good = rows, results, last_good

    def __len__(self) -> int:
        return len(self.rows)

    def build(self) -> dict[str, _Entry]:
        changed = self.last_good
        entries = {}
        for (rel, mtime_ns, size), result in zip(self.rows, self.results, strict=True):
            last_good = changed[rel] if rel in changed else _default_last_good(result)
            entries[rel] = _Entry(mtime_ns, size, result, last_good)
        return entries


def _default_last_good(result: Any) -> Any:
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
        self._pending: dict[str, Any] | None = None
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

    def load(self) -> dict[str, Any]:
        """The stored state ({} when there is none or it cannot be trusted): `entries` (path -> _Entry),
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

    def _read(self, stream: mmap.mmap) -> dict[str, Any]:
        header = pickle.load(stream)
        if not (isinstance(header, dict) and header.get("key") == self.key):
            return {}
        results: list[Any] = []
        rows: list[tuple[str, int, int]] = []
        for part in header["parts"]:
            loaded = pickle.load(stream)
            if len(loaded) != len(part):
                raise ValueError("part length")
            results += loaded
            rows += part
        tail_reader = pickle.Unpickler(stream)
        tail_reader.persistent_load = functools.partial(_load_reference, results)
        tail = tail_reader.load()
        log.info("parse cache %s: %d files", self.path, len(rows))
        return {"entries": _StoredEntries(rows, results, tail["last_good"]),
                **{name: tail[name] for name in ("listing", "last", "snapshot") if name in tail}}

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` (see load) atomically: readers see the old file or the new one, never half."""
        import tempfile

        entries: dict[str, _Entry] = state["entries"]
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
        tail = {name: state[name] for name in ("listing", "last", "snapshot") if name in state}
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
                    tail_writer.persistent_id = functools.partial(_reference, position)
                    tail_writer.dump(tail)
                os.replace(tmp, self.path)
                log.info("parse cache %s written: %d files in %.2f s", self.path, len(entries),
                         time.perf_counter() - started)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write parse cache %s: %s", self.path, exc)

    def save_later(self, state: dict[str, Any], delay: float) -> None:
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


_NEWEST_FIRST = operator.attrgetter("published", "id")
_UPDATED = operator.attrgetter("updated")


def build_snapshot(scan: ScanResult, now: dt.datetime | None = None,
                   previous: Snapshot | None = None) -> Snapshot:
    """Index a scan by topic. Pure apart from `now`, which decides which future items are due.

    Topic objects whose items are unchanged are taken from `previous`, so rendered feeds can be reused.
    When the scan says which few items changed, `previous` is patched instead of rebuilt (the result is
    the same; tests compare both), which keeps a one-file change well under a second at 100k items.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if previous is not None and scan.delta is not None:
        patched = _patch(previous, scan, now)
        if patched is not None:
            return patched
    problems = list(scan.problems)

    by_id: dict[str, Item] = {}
    next_due = None
    for item in scan.items:  # scan order is sorted by path, so the first path wins deterministically
        other = by_id.setdefault(item.id, item)
        if other is not item:
            problems.append(Problem(item.path, f"duplicate id {item.id}: also used by {other.path}, "
                                               "which is served instead"))
    served = []
    for item in by_id.values():
        if item.draft:
            continue
        if item.published > now:
            next_due = item.published if next_due is None else min(next_due, item.published)
            continue
        served.append(item)
    # Sorted once; every topic's list below is built in this order, so none needs sorting again.
    served.sort(key=_NEWEST_FIRST, reverse=True)

    # Topic definitions claim their slugs first; two definitions with one slug: the first path wins.
    defs: dict[str, TopicDef] = {}
    by_name: dict[str, str] = {}  # casefolded name or slug -> slug
    for definition in scan.topic_defs:
        if definition.slug in defs or definition.slug in RESERVED_SLUGS:
            why = ("is reserved" if definition.slug in RESERVED_SLUGS
                   else f"is already defined by {defs[definition.slug].path}")
            problems.append(Problem(definition.path, f"topic slug '{definition.slug}' {why}; definition ignored"))
            continue
        defs[definition.slug] = definition
        by_name.setdefault(definition.name.casefold(), definition.slug)
        by_name.setdefault(definition.slug, definition.slug)

    # Names without a definition get their slug from the name; distinct names that fold to one slug
    # are reported and kept apart with a numbered slug, never merged silently.
    names = sorted({name for item in served for name in item.topics}, key=lambda n: (n.casefold(), n))
    claimed: dict[str, str] = {slug: d.name for slug, d in defs.items()}
    display: dict[str, str] = {slug: d.name for slug, d in defs.items()}
    slug_of: dict[str, str] = {}  # exact name -> slug
    for name in names:
        key = name.casefold()
        if key in by_name:
            slug_of[name] = by_name[key]
            continue
        slug = slugify(name)
        if slug in claimed or slug in RESERVED_SLUGS:
            base, n = slug, 2
            while f"{base}-{n}" in claimed:
                n += 1
            slug = f"{base}-{n}"
            other = claimed.get(base, "a reserved URL")
            example = min(i.path for i in served if name in i.topics)
            problems.append(Problem(example, f"topic '{name}' folds to slug '{base}' like '{other}'; "
                                             f"served separately as '{slug}'"))
        claimed[slug] = name
        display[slug] = name
        by_name[key] = slug_of[name] = slug

    members: dict[str, list[Item]] = {slug: [] for slug in display}
    for item in served:
        topics = item.topics
        if len(topics) == 1:
            members[slug_of[topics[0]]].append(item)
        else:
            for slug in dict.fromkeys(slug_of[name] for name in topics):
                members[slug].append(item)

    old_topics = previous.topics if previous is not None else {}
    topics = {}
    for slug in sorted(members):
        topic = Topic(slug, display[slug], tuple(members[slug]), defs.get(slug))
        old = old_topics.get(slug)
        if old is not None and old == topic:
            topic = old  # unchanged: keep the object so its rendered feeds are reused
        topics[slug] = topic

    all_items = tuple(served)
    return Snapshot(
        topics=MappingProxyType(topics),
        all_items=all_items,
        problems=tuple(sorted(problems, key=lambda p: (p.path, p.reason))),
        scan_seconds=scan.seconds,
        stats=scan.stats,
        next_due=next_due,
        newest=max(map(_UPDATED, all_items), default=EPOCH),
        basis=_Basis(defs=scan.topic_defs, slug_of=slug_of, by_id=by_id,
                     clean=len(problems) == len(scan.problems)),
    )


def _patch(previous: Snapshot, scan: ScanResult, now: dt.datetime) -> Snapshot | None:
    """`previous` with the scan's few changed items taken out and put in; None when the change needs a
    full build (topic names or definitions change, ids collide, drafts or future items, emptied topics)."""
    basis: _Basis | None = previous.basis
    gone, came = scan.delta
    if (basis is None or not basis.clean or len(gone) + len(came) > PATCH_LIMIT
            or (previous.next_due is not None and now >= previous.next_due) or scan.topic_defs != basis.defs):
        return None
    by_id = dict(basis.by_id)
    for item in gone:
        if by_id.get(item.id) is not item or item.draft or item.published > now:
            return None  # only served items are patched out; anything else was never in a topic
        del by_id[item.id]
    for item in came:
        if (item.draft or item.published > now or item.id in by_id
                or any(name not in basis.slug_of for name in item.topics)):
            return None
        by_id[item.id] = item

    all_items = _replace_sorted(previous.all_items, gone, came)
    if all_items is None:
        return None
    topics = dict(previous.topics)
    touched = {basis.slug_of[name] for item in (*gone, *came) for name in item.topics}
    for slug in sorted(touched):
        old = topics[slug]
        items = _replace_sorted(old.items, [i for i in gone if slug in _slugs(i, basis)],
                                [i for i in came if slug in _slugs(i, basis)])
        if items is None or (not items and old.definition is None):
            return None  # an emptied topic disappears: a full build decides what else that changes
        # A topic's names (the displayed one, numbered slugs) come from the names its items use.
        used = {name for item in items for name in item.topics}
        if any(name not in used for item in gone for name in item.topics if basis.slug_of[name] == slug):
            return None
        if items != old.items:
            topics[slug] = Topic(slug, old.name, items, old.definition)
    newest = previous.newest
    if any(i.updated >= newest for i in gone) or any(i.updated > newest for i in came):
        newest = max(map(_UPDATED, all_items), default=EPOCH)
    return Snapshot(
        topics=MappingProxyType(topics), all_items=all_items,
        problems=tuple(sorted(scan.problems, key=lambda p: (p.path, p.reason))),
        scan_seconds=scan.seconds, stats=scan.stats, next_due=previous.next_due, newest=newest,
        basis=_Basis(defs=basis.defs, slug_of=basis.slug_of, by_id=by_id, clean=True),
    )


def _slugs(item: Item, basis: _Basis) -> set[str]:
    return {basis.slug_of[name] for name in item.topics}


def _replace_sorted(items: tuple[Item, ...], gone: list[Item] | tuple[Item, ...],
                    came: list[Item] | tuple[Item, ...]) -> tuple[Item, ...] | None:
    """Newest-first `items` without `gone` and with `came`, in the order a full sort gives; None when
    an item of `gone` is not there."""
    if not gone and not came:
        return items
    result = list(items)
    for item in gone:
        at = _position(result, item)
        if at >= len(result) or result[at] is not item:
            return None
        del result[at]
    for item in came:
        result.insert(_position(result, item), item)
    return tuple(result)


def _position(items: list[Item], item: Item) -> int:
    """Index of `item` in newest-first `items`, or where it belongs (binary search on published, id)."""
    key = _NEWEST_FIRST(item)
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if _NEWEST_FIRST(items[mid]) > key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str = ""
    failed_at: dt.datetime | None = None


class Publisher:
    """Holds the one published snapshot. Assignment of a reference is atomic, so readers never lock."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._health = Health(ok=True)
        self.last_scan: dt.datetime | None = None  # last successful scan, changed or not
        self.scan_seconds: float = 0.0
        self._lock = threading.Lock()  # serialises writers only

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def health(self) -> Health:
        return self._health

    def publish(self, snapshot: Snapshot) -> Snapshot | None:
        """Swap in a new snapshot; returns the one it replaced."""
        with self._lock:
            old, self._snapshot = self._snapshot, snapshot
            self._health = Health(ok=True)
            return old

    def touch(self, when: dt.datetime, seconds: float) -> None:
        """Record a successful scan (whether or not it changed anything)."""
        self.last_scan, self.scan_seconds = when, seconds
        self._health = Health(ok=True)

    def fail(self, message: str) -> None:
        """Record a failed rescan; the current snapshot stays online."""
        self._health = Health(ok=False, message=message, failed_at=dt.datetime.now(dt.timezone.utc))
