"""The topic index: `Topic`, the immutable `Snapshot` the web layer serves, and the `Publisher` that swaps it.

`build_snapshot` turns a scan into a snapshot (or patches the previous one for a few changed items);
`Publisher` holds the one published snapshot and swaps it whole, so a request never sees half a rescan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import topictree
from .model import Item, Problem, TopicDef
from .scan import PATCH_LIMIT, Scanner, ScanResult, ScanStats
from .urls import slugify

RESERVED_SLUGS = frozenset({"all"})
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Topic:
    slug: str
    name: str
    items: tuple[Item, ...]  # newest first, drafts and future items excluded; a parent's include its subtopics'
    definition: TopicDef | None = None
    parent: str = ""  # the parent topic's slug; "" for a top-level topic
    children: tuple[str, ...] = ()  # the direct subtopics' slugs

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
class Snapshot:
    """Everything the web layer serves, immutable once published."""

    topics: Mapping[str, Topic]  # slug -> Topic, sorted by slug (a read-only MappingProxyType)
    all_items: tuple[Item, ...]  # newest first
    problems: tuple[Problem, ...]
    scan_seconds: float
    stats: ScanStats
    next_due: dt.datetime | None = None  # earliest future item; rebuild once it is due
    # Newest item date of the whole site; feeds without items use it, so output stays stable.
    newest: dt.datetime = EPOCH
    # Rendered documents, filled lazily by the documents module; a memo, not part of the value.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # The public sites (base URLs) the memo holds documents for; bounded by the documents module.
    memo_sites: set[Any] = field(default_factory=set, compare=False, repr=False)
    # What build_snapshot needs to patch this snapshot for a few changed items.
    basis: SnapshotBasis | None = field(default=None, compare=False, repr=False)
    aliases: Mapping[str, str] = field(default_factory=dict)  # a renamed topic's former slug -> its slug

    def stored_form(self) -> dict[str, Any]:
        """What the parse cache keeps of this snapshot (see `restored_snapshot`): everything but the scan's
        figures and the rendered documents."""
        return {"topics": dict(self.topics), "all_items": self.all_items, "problems": self.problems,
                "next_due": self.next_due, "newest": self.newest, "basis": self.basis,
                "aliases": dict(self.aliases)}


def restored_snapshot(scanner: Scanner, scan: ScanResult) -> Snapshot | None:
    """The snapshot stored in the scanner's parse cache, when `scan` (its first since loading the cache)
    found the directory exactly as it was then, with that scan's figures; None otherwise."""
    stored = scanner.stored_snapshot(scan)
    if stored is None:
        return None
    return Snapshot(topics=MappingProxyType(stored["topics"]), all_items=stored["all_items"],
                    problems=stored["problems"], scan_seconds=scan.seconds, stats=scan.stats,
                    next_due=stored["next_due"], newest=stored["newest"], basis=stored["basis"],
                    aliases=stored["aliases"])


@dataclass(frozen=True)
class SnapshotBasis:
    defs: tuple[TopicDef, ...]  # the definitions the snapshot was built with
    slug_of: dict[str, str]  # topic name as written -> slug
    by_id: Mapping[str, Item]  # every item by id, served or not (drafts, future)
    clean: bool  # no problems of its own (duplicate ids, slug collisions) that a change could resolve
    parent_of: Mapping[str, str] = field(default_factory=dict)  # topic slug -> its parent's slug



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
        patched = patched_snapshot(previous, scan, now)
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
            holder = claimed.get(base, "a reserved URL")
            example = min(i.path for i in served if name in i.topics)
            problems.append(Problem(example, f"topic '{name}' folds to slug '{base}' like '{holder}'; "
                                             f"served separately as '{slug}'"))
        claimed[slug] = name
        display[slug] = name
        by_name[key] = slug_of[name] = slug

    def slug_for(name: str) -> str | None:  # a topic named by its name or its slug
        known = by_name.get(name.casefold())
        return known if known is not None else (slugify(name) if slugify(name) in display else None)

    parent_of, tree_problems = topictree.parents(defs.values(), slug_for)
    renamed, alias_problems = topictree.aliases(defs.values(), display)
    problems += tree_problems + alias_problems
    kids = topictree.children(parent_of)

    members: dict[str, list[Item]] = {slug: [] for slug in display}
    for item in served:
        names_of_item = item.topics
        if len(names_of_item) == 1:
            members[slug_of[names_of_item[0]]].append(item)
        else:
            for slug in dict.fromkeys(slug_of[name] for name in names_of_item):
                members[slug].append(item)

    old_topics: Mapping[str, Topic] = previous.topics if previous is not None else {}
    topics: dict[str, Topic] = {}
    items_of = topictree.with_descendants(members, parent_of)
    for slug in sorted(members):
        topic = Topic(slug, display[slug], items_of[slug], defs.get(slug), parent_of.get(slug, ""),
                      kids.get(slug, ()))
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
        basis=SnapshotBasis(defs=scan.topic_defs, slug_of=slug_of, by_id=by_id,
                            clean=len(problems) == len(scan.problems), parent_of=parent_of),
        aliases=renamed,
    )


def patched_snapshot(previous: Snapshot, scan: ScanResult, now: dt.datetime) -> Snapshot | None:
    """`previous` with the scan's few changed items taken out and put in; None when the change needs a
    full build (topic names or definitions change, ids collide, drafts or future items, emptied topics)."""
    basis: SnapshotBasis | None = previous.basis
    if scan.delta is None:
        return None
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
    touched = {slug for item in (*gone, *came) for slug in _slugs(item, basis)}
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
            topics[slug] = dataclasses.replace(old, items=items)
    newest = previous.newest
    if any(i.updated >= newest for i in gone) or any(i.updated > newest for i in came):
        newest = max(map(_UPDATED, all_items), default=EPOCH)
    return Snapshot(
        topics=MappingProxyType(topics), all_items=all_items,
        problems=tuple(sorted(scan.problems, key=lambda p: (p.path, p.reason))),
        scan_seconds=scan.seconds, stats=scan.stats, next_due=previous.next_due, newest=newest,
        basis=SnapshotBasis(defs=basis.defs, slug_of=basis.slug_of, by_id=by_id, clean=True,
                            parent_of=basis.parent_of),
        aliases=previous.aliases,
    )


def _slugs(item: Item, basis: SnapshotBasis) -> set[str]:
    """The topics whose feeds hold `item`: its own and their ancestors."""
    own = {basis.slug_of[name] for name in item.topics}
    return own.union(*(topictree.ancestors(slug, basis.parent_of) for slug in own))


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
