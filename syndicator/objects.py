"""The export as objects of a bucket: each file's key, bytes, MD5 and headers, the order of uploads, and
the plan of a deploy (what to upload, what to delete) from the bucket's listing. No network here."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import documents
from .feedpage import CONTENT_TYPES as FEED_TYPES

# Every kind of file an export holds, with the type deploy/nginx-static.conf serves it as (its `types`
# block and `charset utf-8`); a file of another kind stops the deploy rather than going out untyped.
CONTENT_TYPES = {
    **FEED_TYPES,
    "opml": "text/x-opml; charset=utf-8",
    "xsl": "application/xml; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
STATIC_CACHE_CONTROL = "public, max-age=3600"  # static/*: changes only with a release (as nginx-static.conf)
ARCHIVE = re.compile(r"^(feeds/[a-z0-9-]+(?:/[a-z0-9-]+)?/archive)/([0-9]+)\.(rss|atom|json)$")
FEED = re.compile(r"^feeds/[a-z0-9-]+(?:/[a-z0-9-]+)?\.(rss|atom|json)$")
ENTRY_POINTS = ("index.html", "topics.opml")
STAGES = ("documents", "feeds", "index and OPML")


class DeployError(Exception):
    """The deploy cannot start (bad target, unreadable export, unknown file kind); the message says why."""


@dataclass(frozen=True)
class Target:
    """Where the export goes: s3://BUCKET/PREFIX (the prefix may be empty)."""

    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str) -> Target:
        """s3://BUCKET[/PREFIX] as a Target; anything else is a DeployError."""
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", url)
        if not match:
            raise DeployError(f"deploy target must be s3://BUCKET/PREFIX (bucket in lower case), got {url!r}")
        prefix = (match.group(2) or "").strip("/")
        return cls(match.group(1), prefix + "/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Meta:
    """What an object is served with: S3 keeps these per object and sends them with every GET."""

    content_type: str
    cache_control: str
    content_encoding: str = ""


@functools.cache
def cache_control(max_age: int) -> str:
    """The Cache-Control the server sends with a document of this max-age, formatted by `Document` itself."""
    doc = documents.make_document(b"", "", dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), max_age)
    return dict(doc.revalidation_headers)["Cache-Control"]


def metadata(rel: str, interval: int, *, newest_archive: bool = True, gzipped: bool = False) -> Meta:
    """The headers of the export file `rel` (a path like feeds/azure/archive/2.atom), as served.

    Archive pages other than a feed's newest are full and never change (feedpage.paginate appends to the
    newest page only, and a page gains its next-archive link when a newer page appears): the server's
    ARCHIVE_MAX_AGE. Everything else a build can change lives `interval` seconds, static files an hour.
    """
    ext = rel.rsplit(".", 1)[-1] if "." in rel.rsplit("/", 1)[-1] else ""
    if ext not in CONTENT_TYPES:
        raise DeployError(f"{rel}: no content type for this kind of file; add it to deploy.CONTENT_TYPES "
                          "and to deploy/nginx-static.conf")
    if rel.startswith("static/"):
        control = STATIC_CACHE_CONTROL
    elif ARCHIVE.match(rel) and not newest_archive:
        control = cache_control(documents.ARCHIVE_MAX_AGE)
    else:
        control = cache_control(interval)
    return Meta(CONTENT_TYPES[ext], control, "gzip" if gzipped else "")


def stage(rel: str) -> int:
    """Upload order: 0 what nothing links to yet, 1 the subscription feeds, 2 the entry points."""
    if rel in ENTRY_POINTS:
        return 2
    return 1 if FEED.match(rel) else 0


@dataclass(frozen=True)
class LocalFile:
    rel: str  # path in the export, and the object's key below the prefix
    source: Path  # the file whose bytes are uploaded: rel itself, or its .gz sibling
    md5: str
    size: int
    meta: Meta


def _read(path: Path, rel: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DeployError(f"{rel}: cannot read {path}: {exc.strerror}") from None


def local_files(export: Path, interval: int, gzipped: bool) -> dict[str, LocalFile]:
    """Every document of the export by path: no hidden files (.manifest.json, .redirects.nginx are the
    build's and nginx's business, not documents) and no .gz siblings (with `gzipped` their bytes are
    uploaded under the plain name; without it nothing on S3 would ever choose them by Accept-Encoding)."""
    rels: list[str] = []
    for directory, subdirs, files in os.walk(export):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        base = Path(directory).relative_to(export)
        rels.extend((base / name).as_posix().removeprefix("./") for name in sorted(files)
                    if not name.startswith(".") and not name.endswith(".gz"))
    newest: dict[tuple[str, str], int] = {}
    for rel in rels:
        if match := ARCHIVE.match(rel):
            key = (match.group(1), match.group(3))
            newest[key] = max(newest.get(key, 0), int(match.group(2)))
    found = {}
    for rel in rels:
        match = ARCHIVE.match(rel)
        is_newest = match is None or newest[(match.group(1), match.group(3))] == int(match.group(2))
        meta = metadata(rel, interval, newest_archive=is_newest, gzipped=gzipped)
        source = export / rel
        if gzipped:
            source = export / (rel + ".gz")
            if not source.is_file():
                raise DeployError(f"{rel}: the export has no {rel}.gz for --gzip; rebuild it")
        body = _read(source, rel)
        found[rel] = LocalFile(rel, source, hashlib.md5(body, usedforsecurity=False).hexdigest(), len(body), meta)
    return found


@dataclass
class Plan:
    uploads: list[tuple[LocalFile, str]]  # (file, reason: new, changed or metadata), in upload order
    deletes: list[str]  # keys below the prefix
    unchanged: int


def make_plan(local: dict[str, LocalFile], remote: dict[str, str], metadata_stale: bool) -> Plan:
    """What to upload (by MD5 against the remote ETag) and delete. `metadata_stale`: the remote objects
    were uploaded with other headers (another interval, gzip or not), so equal bytes go up again too."""
    uploads = []
    unchanged = 0
    for rel, file in local.items():
        # A multipart upload's ETag ("<md5>-<parts>") or an SSE-KMS one is no MD5 of the bytes: such an
        # object never matches and is replaced by a single-part PUT, whose ETag then does.
        etag = remote.get(rel)
        if etag is None:
            uploads.append((file, "new"))
        elif etag.strip('"') != file.md5:
            uploads.append((file, "changed"))
        elif metadata_stale:
            uploads.append((file, "metadata"))
        else:
            unchanged += 1
    uploads.sort(key=lambda pair: (stage(pair[0].rel), pair[0].rel))
    return Plan(uploads, sorted(set(remote) - set(local)), unchanged)
