"""Each item's entry rendered once per snapshot and format, for bulk rendering (a static export, the
feeds rendered before a server's first request): an item stands in its topics' feeds, their per-kind
feeds, the all-items feed and archive pages, and is the same bytes in every one of them
(`feeds.assemble` puts a document together from these fragments).

Fragments are kept only while a bulk render runs (`keep` ... `drop`): a server answering requests one
by one gains nothing from them and would hold a second copy of every entry it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from . import feeds
from .model import Item
from .snapshot import Snapshot

CHUNK = 250  # items per task when rendering in parallel: big enough that a task outweighs its pipe trip


class FragmentKey(NamedTuple):
    """A snapshot's rendered entries of one format, in its memo: id(item) -> (item, bytes).

    Keyed by identity, with the item kept beside its bytes so that the id cannot be reused while the
    entry is stored: items are compared by content nowhere on this path, which keeps lookups O(1)."""

    fmt: str  #: "rss", "atom" or "json"
    related_limit: int  #: related links shown per entry (the only setting an entry depends on)


def entries_of(snapshot: Snapshot, items: Sequence[Item], fmt: str, related_limit: int) -> list[bytes] | None:
    """The fragments of `items` when the snapshot keeps them for `fmt` (rendering any missing); else None."""
    store = snapshot.memo.get(FragmentKey(fmt, related_limit))
    if store is None:
        return None
    missing = [item for item in items if store.get(id(item), (None,))[0] is not item]
    if missing:
        for item, fragment in zip(missing, feeds.entry_fragments(missing, fmt, related_limit), strict=True):
            store[id(item)] = (item, fragment)
    return [store[id(item)][1] for item in items]


def _render_range(state: tuple[Sequence[Item], str, int], bounds: tuple[int, int]) -> list[bytes]:
    items, fmt, related_limit = state
    return feeds.entry_fragments(items[bounds[0]:bounds[1]], fmt, related_limit)


def keep(snapshot: Snapshot, fmt: str, related_limit: int, items: Sequence[Item], workers: int = 1) -> int:
    """Render the entries of `items` in `fmt` (in `workers` processes) and keep them in the snapshot until
    `drop`; returns how many were rendered. Only the rendered bytes cross a pipe: the forked processes
    already hold the items."""
    from .parallel import fork_map

    store = snapshot.memo.setdefault(FragmentKey(fmt, related_limit), {})
    seen: set[int] = set()
    todo = [item for item in items if id(item) not in seen and not seen.add(id(item))  # type: ignore[func-returns-value]
            and store.get(id(item), (None,))[0] is not item]
    ranges = [(start, min(start + CHUNK, len(todo))) for start in range(0, len(todo), CHUNK)]
    for (start, stop), fragments in zip(ranges, fork_map(_render_range, ranges, (todo, fmt, related_limit),
                                                         workers), strict=True):
        for item, fragment in zip(todo[start:stop], fragments, strict=True):
            store[id(item)] = (item, fragment)
    return len(todo)


def drop(snapshot: Snapshot) -> None:
    """Forget every kept fragment of the snapshot (the documents made from them stay)."""
    for key in [key for key in snapshot.memo if type(key) is FragmentKey]:
        del snapshot.memo[key]
