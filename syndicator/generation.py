"""One generation of a static export being written: its files, what it takes over from the previous
generation, and the feed documents (every format, archive page and kind of each topic) written into it.

A feed document is taken over from the previous generation without being rendered when its page is
known to be the same: the same items in the same versions, links, dates and code. Within one process
(`build --watch`) that is decided from the snapshot the previous generation was made of; across
processes (one `build` after another) from each page's signature, recorded in the generation's
PAGES file: the source files' stamps (path, mtime, size, as the parse cache trusts them), the page's
other fields and the rendering code.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import documents
from .model import Item
from .snapshot import Snapshot

PAGES = ".pages.json"  # hidden: rel path -> signature of the page each feed document was rendered from
WRITER_THREADS = 2  # per process; the disk, not the CPU, is what they wait on
# The code a document's bytes come from, besides the items: hashed into every signature.
_RENDER_CODE = ("documents", "feeds", "feedpage", "entry", "jsonfeed", "fragments", "generation")

#: A row of the manifest: (path, sha256 of the bytes, whether the file was written anew).
Row = tuple[str, str, bool]


def render_code_key() -> bytes:
    """The rendering code and the libraries that serialise: a page rendered by other code is rendered anew."""
    from importlib.metadata import version

    from lxml import etree

    code = hashlib.sha256()
    for name in _RENDER_CODE:
        code.update(Path(__file__).with_name(f"{name}.py").read_bytes())
    code.update(f"{version('feedgen')}|{etree.LXML_VERSION}".encode())
    return code.digest()


def page_signature(fp, fmt: str, stamps: Stamps, code: bytes) -> str:
    """What a feed document's bytes depend on, hashed: every field of its page (the items by their source
    files' stamps), the format and the rendering code."""
    h = hashlib.blake2b(code, digest_size=20)
    h.update(fmt.encode())
    for f in fields(fp):
        if f.name != "items":
            h.update(f"\0{f.name}={getattr(fp, f.name)!r}".encode())
    h.update("\0".join(map(stamps.of_item, fp.items)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Stamps:
    """Every item's source stamp (Scanner.source_stamps), worked out once per export: a page's signature
    looks up some 50 of them, and there are tens of thousands of pages."""

    known: dict[int, str]  # id(item) -> its stamp, for the items the snapshot serves
    stamp: Callable[[Item], str]

    @classmethod
    def of(cls, items, stamp: Callable[[Item], str]) -> Stamps:
        return cls({id(item): stamp(item) for item in items}, stamp)

    def of_item(self, item: Item) -> str:
        found = self.known.get(id(item))
        return self.stamp(item) if found is None else found


def read_json(path: Path) -> dict[str, str]:
    """A generation's manifest or page signatures; empty when missing or unreadable (nothing is reused)."""
    try:
        found = json.loads(path.read_text())
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class Generation:
    """Where a build writes and what it can take over from the previous generation."""

    directory: Path
    previous: Path | None
    old_manifest: dict[str, str]
    now: float
    site: documents.Site
    old_pages: dict[str, str] = field(default_factory=dict)
    # Directories made so far, per process (each forked writer has its own copy): one mkdir each.
    made: set[Path] = field(default_factory=set)

    def _parent(self, dest: Path) -> None:
        if dest.parent not in self.made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.made.add(dest.parent)

    def link(self, rel: str) -> bool:
        """Hard-link the previous generation's file, known unchanged without looking at its bytes."""
        if self.previous is None or rel not in self.old_manifest:
            return False
        dest = self.directory / rel
        self._parent(dest)
        try:
            os.link(self.previous / rel, dest)
            return True
        except OSError:
            return False

    def put(self, rel: str, body: bytes, digest: str = "") -> tuple[str, bool]:
        """Write one file (hard-linking unchanged bytes from the previous build); (sha256, was it new).
        `digest` is the body's sha256 when known already."""
        digest = digest or hashlib.sha256(body).hexdigest()
        dest = self.directory / rel
        self._parent(dest)
        previous = self.previous if self.previous is not None and rel in self.old_manifest else None
        if previous is not None and self.old_manifest[rel] == digest:
            try:
                os.link(previous / rel, dest)  # same bytes: same inode, same mtime
                return digest, False
            except OSError:
                pass  # previous generation pruned or on another filesystem: write it anew
        with open(dest, "xb") as f:  # never into an existing file: it could be a link to the old tree
            f.write(body)
        if previous is not None:
            # nginx's ETag is mtime (whole seconds) + size: a changed file must get a later second than
            # its old version, or a same-size change within a second would keep the old ETag.
            try:
                before = (previous / rel).stat().st_mtime
                if int(self.now) <= int(before):
                    os.utime(dest, (int(before) + 1, int(before) + 1))
            except OSError:
                pass
        return digest, True


def feed_files(snapshot: Snapshot, site: documents.Site, slug: str, fmt: str
               ) -> Iterator[tuple[str, documents.FeedKey]]:
    """Every feed document of one topic in one format (subscription and archives, of every item and of
    each kind) as (path, key)."""
    for kind in (None, *documents.kinds(snapshot, slug)):
        base = f"feeds/{slug}" + (f"/{kind}" if kind else "")
        yield f"{base}.{fmt}", documents.FeedKey(site, slug, fmt, None, None, kind)
        for page in range(1, documents.archive_count(snapshot, site, slug, kind) + 1):
            yield f"{base}/archive/{page}.{fmt}", documents.FeedKey(site, slug, fmt, page, None, kind)


@dataclass(frozen=True)
class FeedTask:
    """What the processes writing one format's feeds share (inherited when they fork)."""

    snapshot: Snapshot
    target: Generation
    fmt: str
    previous: Snapshot | None = None  # the snapshot the previous generation was made of, when known
    sources: Stamps | None = None  # the items' source stamps, when the scanner knows them
    code: bytes = b""  # render_code_key()


@dataclass
class Written:
    rows: list[Row]
    pages: dict[str, str]  # rel -> signature, for the next build
    reused: int  # documents taken over without rendering


def write_feeds(task: FeedTask, docs: list[tuple[str, documents.FeedKey]]) -> Written:
    """Write some feed documents (`feed_files` rows) of one format, each with its .gz, taking over those
    whose page has not changed (see the module's docstring)."""
    from concurrent.futures import ThreadPoolExecutor

    snapshot, target, previous = task.snapshot, task.target, task.previous
    done = Written([], {}, 0)
    puts = []
    # Hashing and writing release the GIL: threads do them while this thread renders the next document.
    with ThreadPoolExecutor(WRITER_THREADS) as writers:
        unchanged: dict[str, bool] = {}  # slug -> all its documents are the same as in `previous`
        for rel, key in docs:
            unchanged_topic = unchanged.get(key.slug)
            if unchanged_topic is None:
                unchanged_topic = unchanged[key.slug] = (previous is not None
                                                         and documents.same_topic(snapshot, previous, key.slug))
            signature = None
            if unchanged_topic:
                same = True
                signature = target.old_pages.get(rel)
            else:
                if task.sources is not None:
                    found = documents.feed_page(snapshot, *key)
                    assert found is not None, f"{rel} is a document of the snapshot"
                    signature = page_signature(found[0], task.fmt, task.sources, task.code)
                same = (signature is not None and target.old_pages.get(rel) == signature) or (
                    previous is not None and documents.same_page(snapshot, previous, key))
            if signature is not None:
                done.pages[rel] = signature
            if same and rel in target.old_manifest and rel + ".gz" in target.old_manifest:
                if target.link(rel) and target.link(rel + ".gz"):
                    done.rows += [(rel, target.old_manifest[rel], False),
                                  (rel + ".gz", target.old_manifest[rel + ".gz"], False)]
                    done.reused += 1
                    continue
                for name in (rel, rel + ".gz"):  # half linked: render both anew
                    (target.directory / name).unlink(missing_ok=True)
            doc = documents.feed_document(snapshot, *key, keep=False)
            assert doc is not None, f"{rel} is a document of the snapshot"
            puts += [(rel, writers.submit(target.put, rel, doc.body, doc.digest)),
                     (rel + ".gz", writers.submit(target.put, rel + ".gz", doc.gzip))]
    done.rows += [(rel, *future.result()) for rel, future in puts]
    return done
