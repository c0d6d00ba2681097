"""Topic trees and renamed topics: which topic is whose parent (a definition's `parent`), the items a
parent's feeds hold (its own and all its descendants', once each, as WordPress category feeds do), and
the former slugs (`aliases`) that redirect to a topic. Pure functions over names and slugs.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping

from .model import Item, Problem, TopicDef
from .urls import slugify

_NEWEST_FIRST = operator.attrgetter("published", "id")


def parents(defs: Iterable[TopicDef], slug_for: Callable[[str], str | None]) -> tuple[dict[str, str], list[Problem]]:
    """slug -> parent slug for every definition whose `parent` names a known topic (by name or slug,
    through `slug_for`); an unknown parent, a topic its own parent, or a cycle is a Problem naming the
    file, and that topic stays top-level."""
    parent_of: dict[str, str] = {}
    problems: list[Problem] = []
    for definition in defs:
        if not definition.parent:
            continue
        parent = slug_for(definition.parent)
        if parent is None:
            problems.append(Problem(definition.path, f"parent topic '{definition.parent}' is not a known topic; "
                                                     f"'{definition.name}' stays a top-level topic"))
        elif parent == definition.slug:
            problems.append(Problem(definition.path, f"topic '{definition.name}' names itself as its parent; "
                                                     "it stays a top-level topic"))
        else:
            parent_of[definition.slug] = parent
    paths = {d.slug: d.path for d in defs}
    for slug in sorted(parent_of):
        seen = [slug]
        up = parent_of.get(slug)
        while up is not None and up not in seen:
            seen.append(up)
            up = parent_of.get(up)
        if up is not None:  # back at a topic already on the way: a cycle; the topic that closes it yields
            cycle = seen[seen.index(up):]
            closer = max(cycle)  # deterministic: the same topic is cut whatever the file order
            loop = " -> ".join([*cycle, up])
            problems.append(Problem(paths.get(closer, closer),
                                    f"topic parents form a cycle ({loop}); '{closer}' stays a top-level topic"))
            del parent_of[closer]
    return parent_of, problems


def ancestors(slug: str, parent_of: Mapping[str, str]) -> list[str]:
    """The parent, its parent, ... of `slug` (parent_of has no cycles)."""
    chain = []
    up = parent_of.get(slug)
    while up is not None:
        chain.append(up)
        up = parent_of.get(up)
    return chain


def children(parent_of: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """slug -> its direct subtopics, sorted."""
    found: dict[str, list[str]] = {}
    for child, parent in parent_of.items():
        found.setdefault(parent, []).append(child)
    return {parent: tuple(sorted(kids)) for parent, kids in found.items()}


def with_descendants(own: Mapping[str, list[Item]], parent_of: Mapping[str, str]) -> dict[str, tuple[Item, ...]]:
    """Each topic's items: its own (already newest first) and, for a parent, all its descendants' too,
    once each, newest first."""
    pooled: dict[str, list[list[Item]]] = {slug: [items] for slug, items in own.items()}
    for slug, items in own.items():
        for up in ancestors(slug, parent_of):
            if up in pooled:
                pooled[up].append(items)
    result = {}
    for slug, lists in pooled.items():
        if len(lists) == 1:
            result[slug] = tuple(lists[0])
        else:
            unique = {id(item): item for items in lists for item in items}
            result[slug] = tuple(sorted(unique.values(), key=_NEWEST_FIRST, reverse=True))
    return result


def aliases(defs: Iterable[TopicDef], slugs: Mapping[str, object]) -> tuple[dict[str, str], list[Problem]]:
    """Former slug -> current slug, from each definition's `aliases` (old names or slugs); an alias that is
    a topic's current slug, or claimed twice, is a Problem and is ignored."""
    found: dict[str, str] = {}
    problems: list[Problem] = []
    for definition in defs:
        for alias in definition.aliases:
            old = slugify(alias)
            if old == definition.slug:
                continue
            if old in slugs or old == "all":
                problems.append(Problem(definition.path, f"alias '{alias}' is the URL of topic '{old}'; ignored"))
            elif found.get(old, definition.slug) != definition.slug:
                problems.append(Problem(definition.path, f"alias '{alias}' already redirects to '{found[old]}'; "
                                                         "ignored"))
            else:
                found[old] = definition.slug
    return found, problems
