"""What the content tree holds: the walk, its listing of (mtime, size) per file, and what is known per file.

A no-change rescan is one walk plus one comparison of two listings, so a listing is plain lists, not
an object per file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .model import Item, Problem, TopicDef

log = logging.getLogger(__name__)
IGNORED_SUFFIXES = ("~", ".swp", ".swo", ".swx", ".tmp", ".part", ".bak", ".orig")
_IGNORED_PREFIXES = (".", "#")
_CONTENT_SUFFIXES = (".md", ".yaml", ".yml")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

#: One directory of a listing: (path prefix ending in "/", or "" for the root; its content files' names;
#: [mtime_ns, size, mtime_ns, size, ...] of those files, in the same order).
DirListing = tuple[str, list[str], list[int]]
#: Every directory of the tree, in a stable order.
Listing = list[DirListing]
#: One file as the walk saw it: (path relative to the root, mtime_ns, size).
FileStamp = tuple[str, int, int]
#: What parsing one file gives: an item, a topic definition, a problem, or None (a YAML file that is
#: not a topic definition).
ParseResult = Item | TopicDef | Problem | None


class ScanError(Exception):
    """The content directory as a whole could not be scanned (missing, unreadable)."""


@dataclass
class FileEntry:
    """What is known of one file: the stamp it was parsed at, the result, and its last good version."""

    mtime_ns: int
    size: int
    result: ParseResult
    last_good: Item | TopicDef | None = None


def is_content_path(parts: list[str]) -> bool:
    """Whether a path (split on "/") names a file the walk would list: no hidden or editor names on the
    way, no directory named like a backup, a content file's suffix."""
    return (not any(p.startswith(_IGNORED_PREFIXES) for p in parts)
            and not any(p.endswith(IGNORED_SUFFIXES) for p in parts[:-1])
            and parts[-1].endswith(_CONTENT_SUFFIXES))


def rows(listing: Listing) -> Iterator[FileStamp]:
    """Every file of a listing."""
    for prefix, names, stamps in listing:
        for i, name in enumerate(names):
            yield prefix + name, stamps[2 * i], stamps[2 * i + 1]


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


def walk(root: str | os.PathLike[str]) -> Listing:
    """Per directory: (path prefix, file names, [mtime_ns, size, mtime_ns, size, ...]) of its content
    files, in a stable order. One stat per file; no per-file objects beyond what stat makes, because
    a no-change rescan is this walk plus one comparison with the previous one."""
    try:
        real_root = os.path.realpath(root)
        if not os.path.isdir(real_root):
            raise ScanError(f"content directory {root} does not exist or is not a directory")
    except OSError as exc:
        raise ScanError(f"content directory {root}: {exc.strerror}") from None
    listing: Listing = []
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


def restamped(listing: Listing, changes: list[FileStamp]) -> Listing | None:
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

