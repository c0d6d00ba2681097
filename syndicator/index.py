"""Incremental scan of the content directory, the topic index, and the published `Snapshot`.

`Scanner` remembers (mtime, size) per file and reparses only what changed; `build_snapshot` turns a
scan into an immutable `Snapshot`; `Publisher` holds the one snapshot the web layer serves and swaps
it whole, so a request never sees half a rescan.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .content import Item, Problem, TopicDef, read_item, read_topic, slugify

log = logging.getLogger(__name__)
RESERVED_SLUGS = frozenset({"all"})
IGNORED_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".tmp", ".part", ".bak", ".orig")


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


@dataclass(frozen=True)
class Snapshot:
    """Everything the web layer serves, immutable once published."""

    topics: MappingProxyType  # slug -> Topic, sorted by slug
    all_items: tuple[Item, ...]  # newest first
    problems: tuple[Problem, ...]
    scanned_at: dt.datetime
    scan_seconds: float
    stats: ScanStats
    next_due: dt.datetime | None = None  # earliest future item; rebuild once it is due
    # Rendered documents, filled lazily by the documents module; a memo, not part of the value.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def newest(self) -> dt.datetime:
        """Newest item date of the whole site; feeds without items use it, so output stays stable."""
        if self.all_items:
            return max(item.updated for item in self.all_items)
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class _Entry:
    mtime_ns: int
    size: int
    result: Any  # Item | TopicDef | Problem | None
    last_good: Any = None


def _ignored(name: str) -> bool:
    return name.startswith((".", "#")) or name.endswith(IGNORED_SUFFIXES)


class Scanner:
    """Walks a content directory, reparsing only files whose (mtime, size) changed since last time."""

    def __init__(self, root: str | os.PathLike[str], *, site_url: str = "", max_file_bytes: int = 1_048_576):
        self.root = Path(root)
        self.site_url = site_url
        self.max_file_bytes = max_file_bytes
        self._entries: dict[str, _Entry] = {}
        self.parse_count = 0  # total files parsed since creation; tests use it to prove incrementality

    def _walk(self) -> Iterator[tuple[str, os.stat_result]]:
        try:
            real_root = os.path.realpath(self.root)
            if not os.path.isdir(real_root):
                raise ScanError(f"content directory {self.root} does not exist or is not a directory")
        except OSError as exc:
            raise ScanError(f"content directory {self.root}: {exc.strerror}") from None
        visited = {real_root}
        stack = [(real_root, "")]
        while stack:
            directory, prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                if not prefix:
                    raise ScanError(f"content directory {self.root}: {exc.strerror}") from None
                log.warning("cannot list %s: %s", prefix, exc.strerror)
                continue
            for entry in entries:
                if _ignored(entry.name):
                    continue
                rel = prefix + entry.name
                try:
                    if entry.is_symlink():
                        # Follow links only while they stay inside the content directory.
                        target = os.path.realpath(entry.path)
                        if os.path.commonpath([real_root, target]) != real_root:
                            continue
                    if entry.is_dir():
                        real = os.path.realpath(entry.path)
                        if real not in visited:
                            visited.add(real)
                            stack.append((entry.path, rel + "/"))
                    elif entry.is_file() and entry.name.endswith((".md", ".yaml", ".yml")):
                        yield rel, entry.stat()
                except OSError:
                    continue  # vanished between listing and stat: it is simply not there

    def _parse(self, rel: str) -> Any:
        path = self.root / rel
        try:
            with open(path, "rb") as f:
                raw = f.read(self.max_file_bytes + 1)
                if len(raw) > self.max_file_bytes:
                    size = os.fstat(f.fileno()).st_size
                    return Problem(rel, f"file is {size:,} bytes, over the {self.max_file_bytes:,}-byte "
                                        "limit (max_file_bytes)")
        except OSError as exc:
            return Problem(rel, f"cannot read file: {exc.strerror}")
        self.parse_count += 1
        try:
            if rel.endswith(".md"):
                return read_item(raw, rel, site_url=self.site_url, max_bytes=self.max_file_bytes)
            return read_topic(raw, rel, site_url=self.site_url)
        except Exception as exc:  # a reader bug must not take the scan down; report it like bad input
            log.exception("unexpected error reading %s", rel)
            return Problem(rel, f"internal error while reading: {type(exc).__name__}: {exc}")

    def scan(self) -> ScanResult:
        """One incremental pass. Raises ScanError only when the directory itself is unusable."""
        start = time.perf_counter()
        seen: dict[str, _Entry] = {}
        changed = parsed = 0
        for rel, st in self._walk():
            old = self._entries.get(rel)
            if old is not None and old.mtime_ns == st.st_mtime_ns and old.size == st.st_size:
                seen[rel] = old
                continue
            changed += 1
            result = self._parse(rel)
            parsed += 1
            last_good = old.last_good if old else None
            if isinstance(result, Item | TopicDef):
                last_good = result
            elif isinstance(result, Problem) and last_good is not None:
                result = Problem(rel, result.reason + " (the last good version is still served)", stale=True)
            seen[rel] = _Entry(st.st_mtime_ns, st.st_size, result, last_good)
        removed = len(set(self._entries) - set(seen))
        self._entries = seen

        items, defs, problems = [], [], []
        for rel in sorted(seen):
            entry = seen[rel]
            if isinstance(entry.result, Problem):
                problems.append(entry.result)
            good = entry.result if isinstance(entry.result, Item | TopicDef) else entry.last_good
            if isinstance(good, Item):
                items.append(good)
            elif isinstance(good, TopicDef):
                defs.append(good)
        stats = ScanStats(seen=len(seen), changed=changed, parsed=parsed, removed=removed)
        return ScanResult(tuple(items), tuple(defs), tuple(problems), stats, time.perf_counter() - start)


def _newest_first(items: list[Item]) -> tuple[Item, ...]:
    return tuple(sorted(items, key=lambda i: (i.published, i.id), reverse=True))


def build_snapshot(scan: ScanResult, now: dt.datetime | None = None,
                   previous: Snapshot | None = None) -> Snapshot:
    """Index a scan by topic. Pure apart from `now`, which decides which future items are due.

    Topic objects whose items are unchanged are taken from `previous`, so rendered feeds can be reused.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    problems = list(scan.problems)

    by_id: dict[str, Item] = {}
    next_due = None
    for item in scan.items:  # scan order is sorted by path, so the first path wins deterministically
        if item.id in by_id:
            problems.append(Problem(item.path, f"duplicate id {item.id}: also used by {by_id[item.id].path}, "
                                               "which is served instead"))
            continue
        by_id[item.id] = item
    served = []
    for item in by_id.values():
        if item.draft:
            continue
        if item.published > now:
            next_due = item.published if next_due is None else min(next_due, item.published)
            continue
        served.append(item)

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
    for name in names:
        key = name.casefold()
        if key in by_name:
            continue
        slug = slugify(name)
        if slug in claimed or slug in RESERVED_SLUGS:
            base, n = slug, 2
            while f"{base}-{n}" in claimed:
                n += 1
            slug = f"{base}-{n}"
            other = claimed.get(base, "a reserved URL")
            example = next(i.path for i in served if name in i.topics)
            problems.append(Problem(example, f"topic '{name}' folds to slug '{base}' like '{other}'; "
                                             f"served separately as '{slug}'"))
        claimed[slug] = name
        display[slug] = name
        by_name[key] = slug

    members: dict[str, list[Item]] = {slug: [] for slug in display}
    for item in served:
        for slug in dict.fromkeys(by_name[name.casefold()] for name in item.topics):
            members[slug].append(item)

    old_topics = previous.topics if previous is not None else {}
    topics = {}
    for slug in sorted(members):
        topic = Topic(slug, display[slug], _newest_first(members[slug]), defs.get(slug))
        old = old_topics.get(slug)
        if old is not None and old == topic:
            topic = old  # unchanged: keep the object so its rendered feeds are reused
        topics[slug] = topic

    return Snapshot(
        topics=MappingProxyType(topics),
        all_items=_newest_first(served),
        problems=tuple(sorted(problems, key=lambda p: (p.path, p.reason))),
        scanned_at=now,
        scan_seconds=scan.seconds,
        stats=scan.stats,
        next_due=next_due,
    )


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
