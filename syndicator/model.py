"""The content model: typed, immutable items and the parts they are made of, topic definitions and problems.

Nothing here reads files; `reader` builds these from one file's bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

# Items and their parts are typed named tuples rather than frozen dataclasses: a warm start unpickles
# ~400k of them from the parse cache, and a tuple without an instance dict comes back in one C call
# (see _rebuilt); docs/design.md has the measurement. TopicDefs and Problems are few: dataclasses
# (Problem compares without its flags).

def _rebuilt(self: tuple) -> tuple:
    """Pickle support: rebuild with `tuple.__new__(cls, values)`, not namedtuple's Python `__new__`."""
    return tuple.__new__, (type(self), tuple(self))


class Provider(NamedTuple):
    """Who published an item (a site, a company)."""

    name: str
    domain: str = ""
    logo: str = ""  #: absolute http(s) URL of the provider's logo (`provider.images[0]`), or ""

    def __reduce__(self) -> tuple:
        return _rebuilt(self)


class Image(NamedTuple):
    url: str
    width: int | None = None
    height: int | None = None
    title: str = ""

    def __reduce__(self) -> tuple:
        return _rebuilt(self)

    @property
    def mime_type(self) -> str:
        return mime_type_for(self.url)


class Person(NamedTuple):
    """Someone who wrote an item (`provider.authors`)."""

    name: str
    url: str = ""

    def __reduce__(self) -> tuple:
        return _rebuilt(self)


class Video(NamedTuple):
    """What makes an item of kind `video` playable."""

    player: str = ""  #: https URL of the embeddable player (the src of `featuredContent`'s iframe), or ""
    duration: int | None = None  #: seconds, from the ISO 8601 `length`

    def __reduce__(self) -> tuple:
        return _rebuilt(self)


class Download(NamedTuple):
    """A file an item offers (an entry of `actions` with type `download`)."""

    url: str
    title: str = ""
    attribution: str = ""

    def __reduce__(self) -> tuple:
        return _rebuilt(self)

    @property
    def mime_type(self) -> str:
        return mime_type_for(self.url)

    @property
    def extension(self) -> str:
        """The file's extension with its dot (".zip"), or ""."""
        path = self.url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]
        dot = path.rfind(".")
        return path[dot:].lower() if dot > 0 else ""


class Related(NamedTuple):
    title: str
    url: str
    excerpt: str = ""
    published: dt.datetime | None = None
    provider: str = ""

    def __reduce__(self) -> tuple:
        return _rebuilt(self)


class Item(NamedTuple):
    """One news item, as served. Immutable; equal content gives equal items."""

    id: str
    path: str  # relative to the content directory, POSIX separators
    title: str
    url: str
    published: dt.datetime
    updated: dt.datetime
    excerpt: str = ""
    provider: Provider | None = None
    topics: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    related: tuple[Related, ...] = ()
    body_html: str = ""
    draft: bool = False  #: not served: `published: false`, `removed: true` or `deleted: true`
    kind: str = "article"  #: `type`: article, video, download, or another kind's name
    video: Video | None = None
    downloads: tuple[Download, ...] = ()
    authors: tuple[Person, ...] = ()  #: the people who wrote it, in the order given

    def __reduce__(self) -> tuple:
        return _rebuilt(self)


@dataclass(frozen=True)
class TopicDef:
    """A topic definition file (`topics/*.yaml` or any YAML with `taxonomy: topic`)."""

    slug: str
    name: str
    path: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()
    image: str = ""
    shortname: str = ""
    parent: str = ""  #: the parent topic's name or slug, as written; "" for a top-level topic
    aliases: tuple[str, ...] = ()  #: former names or slugs whose URLs redirect here


@dataclass(frozen=True)
class Problem:
    """A file we could not use, or a conflict we resolved; `reason` is for people."""

    path: str
    reason: str
    stale: bool = field(default=False, compare=False)  # an older good version is still served
    # The file could not be read at all (permissions, I/O): retried at every scan, because fixing that
    # (chmod, a remount) does not change the file's mtime or size.
    transient: bool = field(default=False, compare=False)


class Invalid(Exception):
    """Raised inside the reader to turn into a Problem; never escapes this module."""



_MIME = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
    ".webp": "image/webp", ".avif": "image/avif", ".svg": "image/svg+xml", ".bmp": "image/bmp",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg",
    ".zip": "application/zip", ".gz": "application/gzip", ".tgz": "application/gzip", ".pdf": "application/pdf",
    ".msapp": "application/octet-stream", ".json": "application/json", ".csv": "text/csv",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def mime_type_for(url: str) -> str:
    """Media type from a URL's extension; application/octet-stream when the extension says nothing."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    dot = path.rfind(".")
    if dot == -1 or "/" in path[dot:]:
        return "application/octet-stream"
    return _MIME.get(path[dot:].lower(), "application/octet-stream")

