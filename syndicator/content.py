"""The content model and reading one file into an `Item`, a `TopicDef` or a `Problem`.

Everything read from a file is checked field by field; a wrong type or a broken file becomes a
`Problem(path, reason)` with a reason a person can act on, never an exception.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import html
import re
import sys
import threading
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import yaml

from . import fastyaml

try:  # libyaml is ~7x faster; fall back to the pure-Python safe loader where it is missing.
    SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    SafeLoader = yaml.SafeLoader

UTC = dt.timezone.utc
# Bounds on what one YAML document may expand to; an alias bomb is cheap to load (shared references)
# but explodes when walked, so the walk itself is bounded.
MAX_NODES = 20_000
MAX_DEPTH = 32
MAX_TEXT = 100_000  # characters kept of any single text field


# ----------------------------------------------------------------------------- model

# Items and their parts are typed named tuples rather than frozen dataclasses: a warm start unpickles
# ~400k of them from the parse cache, and a tuple without an instance dict comes back in one C call
# (`tuple.__new__`, see _rebuilt) instead of a dict filled key by key. Measured on the 100k-item
# benchmark corpus, fresh processes, median of 5: 2.09 s (dataclasses) -> 1.46 s for all cache parts.
# The few TopicDefs and Problems stay dataclasses (Problem compares without its flags).


def _rebuilt(self: tuple) -> tuple:
    """Pickle support: rebuild with `tuple.__new__(cls, values)`, not namedtuple's Python `__new__`."""
    return tuple.__new__, (type(self), tuple(self))


class Provider(NamedTuple):
    name: str
    domain: str = ""

    __reduce__ = _rebuilt


class Image(NamedTuple):
    url: str
    width: int | None = None
    height: int | None = None
    title: str = ""

    __reduce__ = _rebuilt

    @property
    def mime_type(self) -> str:
        return mime_type_for(self.url)


class Related(NamedTuple):
    title: str
    url: str
    excerpt: str = ""
    published: dt.datetime | None = None
    provider: str = ""

    __reduce__ = _rebuilt


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
    draft: bool = False

    __reduce__ = _rebuilt


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


# ----------------------------------------------------------------------------- text and URL helpers

# Characters XML 1.0 forbids (C0 controls except tab/newline/CR, surrogates, U+FFFE/U+FFFF), and the C1
# controls it discourages: readers and browsers reinterpret those as Windows-1252 (found by property tests).
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_URL_FORBIDDEN = re.compile("[\\s\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_MIME = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
    ".webp": "image/webp", ".avif": "image/avif", ".svg": "image/svg+xml", ".bmp": "image/bmp",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg",
}
# Lower-case http(s) scheme, a host of lower-case letters, digits, dots and dashes (no user, port or IPv6
# brackets), then printable ASCII: urlsplit accepts these as they are.
_PLAIN_URL = re.compile(r"https?://[a-z0-9.-]+(?:[/?#][!-~]*)?")
_TRACKING = re.compile(r"^(utm_[a-z]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|ocid|cmpid|ref|ref_src)$", re.I)


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    """Drop characters XML cannot carry and surrounding whitespace; cap the length."""
    # Printable text (most fields) holds nothing _XML_FORBIDDEN matches: all it matches is unprintable.
    text = (value if value.isprintable() else _XML_FORBIDDEN.sub("", value)).strip()
    return text[:limit]


def mime_type_for(url: str) -> str:
    """Media type from a URL's extension; application/octet-stream when the extension says nothing."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    dot = path.rfind(".")
    if dot == -1 or "/" in path[dot:]:
        return "application/octet-stream"
    return _MIME.get(path[dot:].lower(), "application/octet-stream")


def absolute_url(value: str, site_url: str) -> str | None:
    """An http(s) URL, or None. Relative URLs resolve against `site_url` when one is configured."""
    value = value.strip()
    if not value or _URL_FORBIDDEN.search(value):
        return None
    if _PLAIN_URL.fullmatch(value):
        return value  # what parsed_absolute_url returns for it, without parsing
    return parsed_absolute_url(value, site_url)


def parsed_absolute_url(value: str, site_url: str) -> str | None:
    """absolute_url's general path, for a stripped value with no whitespace or control characters."""
    try:
        parts = urlsplit(value)
        if not parts.scheme:
            if not site_url or value.startswith("//"):
                return None
            value = urljoin(site_url.rstrip("/") + "/", value.lstrip("/"))
            parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:  # malformed IPv6 host or port (found by fuzzing)
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme + value[len(parts.scheme):]  # schemes are case-insensitive; readers expect lower case


# A URL with a plain lower-case host, no port, query or fragment: its canonical form is host and path.
_PLAIN_STORY_URL = re.compile(r"https?://((?!www\.)[a-z0-9.-]+)(/[!-\"$->@-~]*)?")


def canonical_url(url: str) -> str:
    """The URL reduced to what identifies the story: no scheme, no `www.`, no default port,
    no trailing slash, no fragment, no tracking parameters, remaining parameters sorted."""
    match = _PLAIN_STORY_URL.fullmatch(url)
    if match is not None:  # what parsed_canonical_url returns for it, without parsing (~10 µs)
        return match[1] + ((match[2] or "").rstrip("/") or "/")
    return parsed_canonical_url(url)


def parsed_canonical_url(url: str) -> str:
    """canonical_url by way of the URL parser, for any URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    path = parts.path.rstrip("/") or "/"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING.match(k)))
    return urlunsplit(("", host, path, query, "")).lstrip("/")


def item_id(url: str) -> str:
    """Stable entry id: urn:uuid of the canonical story URL (survives renames, rehosting, http->https)."""
    return "urn:uuid:" + uuid5_text(canonical_url(url))


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122: 10xx


def uuid5_text(name: str) -> str:
    """str(uuid.uuid5(uuid.NAMESPACE_URL, name)), from the hash's hex digits (uuid.UUID costs ~8 µs)."""
    h = hashlib.sha1(_URL_NAMESPACE + name.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def slugify(name: str) -> str:
    """ASCII URL slug of a topic name; names with no ASCII letters get a stable hashed slug."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    folded = folded.replace("#", " sharp ").replace("+", " plus ").replace("&", " and ")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:80].strip("-")
    if not slug:
        slug = "topic-" + uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:8]
    return slug


# ----------------------------------------------------------------------------- YAML


def _check_shape(data: Any) -> None:
    """Walk the loaded document with a budget; aliases are followed, so bombs hit the budget."""
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise Invalid(f"front matter expands to more than {MAX_NODES} values (YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise Invalid(f"front matter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node.keys())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def load_yaml(text: str) -> Any:
    """Safe-load one YAML document, bounded; raises Invalid with a short, located reason."""
    data = fastyaml.load(text, MAX_NODES, MAX_DEPTH)
    if data is not None:
        return data  # PyYAML's own result, bounds checked on the way (see fastyaml)
    try:
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader/CSafeLoader only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        if "constructor" in problem:
            problem = f"{problem} (only plain YAML is allowed)"
        raise Invalid(f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise Invalid(f"invalid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise Invalid(f"front matter is nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for well-formed but impossible values (found by fuzzing:
        # a timestamp in month 13 raises ValueError, not YAMLError).
        raise Invalid(f"invalid YAML value: {exc}") from None
    _check_shape(data)
    return data


def split_front_matter(text: str) -> tuple[str, str]:
    """Split `---` front matter from the Markdown body. Raises Invalid when there is none."""
    if not text.startswith("---"):
        raise Invalid("no YAML front matter (the file must start with a '---' line)")
    first_break = text.find("\n")
    if first_break == -1 or text[:first_break].strip() != "---":
        raise Invalid("no YAML front matter (the file must start with a '---' line)")
    rest = text[first_break + 1:]
    closing = _closing_line(rest)
    if closing is None:
        raise Invalid("front matter is not terminated (no closing '---' line)")
    start, end = closing
    return rest[:start], rest[end:].lstrip("\n")


def _closing_line(text: str) -> tuple[int, int] | None:
    """Start and end of the first line that is `---` or `...` with only spaces or tabs after it.

    str.find instead of a multi-line regex: the regex tried a match at every character of the front
    matter (~25 µs per file)."""
    probe = "\n" + text  # probe[i + 1] is text[i]: a line start is always just after a "\n"
    position = 0
    while True:
        dashes, dots = probe.find("\n---", position), probe.find("\n...", position)
        found = dashes if dots == -1 or -1 < dashes < dots else dots
        if found == -1:
            return None
        line_end = probe.find("\n", found + 4)
        if line_end == -1:
            line_end = len(probe)
        if not probe[found + 4:line_end].strip(" \t"):
            return found, line_end - 1
        position = found + 1


def decode(raw: bytes) -> str:
    """UTF-8 text with BOM and CRLF normalised; binary files are rejected."""
    if b"\x00" in raw:
        raise Invalid("binary file (contains NUL bytes), not a Markdown item")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Control characters are dropped rather than rejected: YAML and XML both refuse them, readers never
    # need them, and one stray escape code should not hide a story.
    if _maybe_forbidden(raw):
        text = _XML_FORBIDDEN.sub("", text)
    return text


# Every byte that starts the UTF-8 form of a character _XML_FORBIDDEN matches (valid UTF-8 holds no
# surrogates): C0 controls but tab, LF and CR; DEL; 0xC2, the lead byte of C1 controls (and of common
# characters such as the no-break space, so it only asks for a closer look); 0xEF, lead byte of U+FFFE
# and U+FFFF. Checking bytes with translate is C at memcpy speed; the regex costs ~5 ns a character.
_FORBIDDEN_LEADS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xEF])


def _maybe_forbidden(raw: bytes) -> bool:
    return len(raw.translate(None, _FORBIDDEN_LEADS)) != len(raw)


# ----------------------------------------------------------------------------- field checks


def _text(data: dict, key: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise Invalid(f"missing required field '{key}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"'{key}' must be text, got {_kind(value)}")
    text = clean_text(str(value), limit)
    if required and not text:
        raise Invalid(f"'{key}' is empty")
    return text


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def parse_datetime(value: Any, key: str) -> dt.datetime:
    """YAML timestamps, dates and ISO 8601 strings; naive times are UTC."""
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise Invalid(f"'{key}' is not an ISO 8601 date/time: {text[:60]!r}") from None
    else:
        raise Invalid(f"'{key}' must be a date/time, got {_kind(value)}")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    return result.astimezone(UTC)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 100_000:
        return value
    if isinstance(value, str) and value.strip().isdigit() and 0 < int(value) < 100_000:
        return int(value)
    return None


def _list(data: dict, key: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list, got {_kind(value)}")
    return value


def _images(value: list, site_url: str, key: str = "images") -> tuple[Image, ...]:
    images = []
    for entry in value:
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise Invalid(f"'{key}' entries must be mappings with a url, got {_kind(entry)}")
        raw = entry.get("url")
        url = absolute_url(raw, site_url) if isinstance(raw, str) else None
        if url is None:
            continue  # relative without site_url, or not http(s): never reaches a feed
        title = entry.get("title")
        images.append(Image(url=url, width=_int_or_none(entry.get("width")),
                            height=_int_or_none(entry.get("height")),
                            title=clean_text(title, 500) if isinstance(title, str) else ""))
    return tuple(images)


def _provider(value: Any) -> Provider | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Provider(name=clean_text(value, 200)) if value.strip() else None
    if not isinstance(value, dict):
        raise Invalid(f"'provider' must be a mapping with a name, got {_kind(value)}")
    name = _text(value, "name", limit=200)
    domain = _text(value, "domain", limit=200)
    return _shared_provider(name or domain, domain) if (name or domain) else None


# A site has tens of providers and 100k items: items share one Provider object per (name, domain),
# which the parse cache's pickles then store once per part instead of once per item.
@functools.lru_cache(maxsize=1024)
def _shared_provider(name: str, domain: str) -> Provider:
    return Provider(name=name, domain=domain)


def _related(value: list, site_url: str) -> tuple[Related, ...]:
    related = []
    for entry in value:
        if not isinstance(entry, dict):
            raise Invalid(f"'related' entries must be mappings, got {_kind(entry)}")
        raw = entry.get("webUrl") or entry.get("originalUrl") or entry.get("url")
        url = absolute_url(raw, site_url) if isinstance(raw, str) else None
        title = _text(entry, "title", limit=500)
        if url is None or not title:
            continue  # a related link needs somewhere to go and something to say
        published = None
        if entry.get("publishedDateTime") is not None:
            try:
                published = parse_datetime(entry["publishedDateTime"], "related.publishedDateTime")
            except Invalid:
                published = None
        provider = _provider(entry.get("provider"))
        related.append(Related(title=title, url=url, excerpt=_text(entry, "excerpt", limit=2000),
                               published=published, provider=provider.name if provider else ""))
    return tuple(related)


def _topics(data: dict) -> tuple[str, ...]:
    value = data.get("topics")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]  # `topics: Azure` is one topic; a comma may belong to a name
    if not isinstance(value, list):
        raise Invalid(f"'topics' must be a list of names, got {_kind(value)}")
    names: list[str] = []
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, str | int | float):
            raise Invalid(f"'topics' entries must be names, got {_kind(entry)}")
        name = clean_text(str(entry), 200)
        if name and name not in names:
            names.append(sys.intern(name))  # a name is in hundreds of items: one string, pickled once per part
    return tuple(names)


# ----------------------------------------------------------------------------- readers


# A paragraph of words with plain punctuation, on one line: Markdown wraps it in <p> and escapes `&`,
# `<` and `>`, and the sanitiser leaves the result alone. Not plain: markup characters, leading spaces,
# Unicode spaces (the no-break space becomes &nbsp;), a `<` that could open a tag or autolink, a `&` in a
# paragraph with a `;` (it could be an entity). A `]` is plain: without a `[` it links nothing. Most
# bodies are only such paragraphs; skipping the Markdown and HTML parsers for them saves ~0.5 ms per
# body. tests/test_content.py compares this with the full path exhaustively on markup tokens and pairs,
# by hypothesis, and on generated bodies.
_PLAIN_PARAGRAPH = re.compile(
    r"[^\W_](?:[^\W_]|[ ,;'\"%?&<>\]\u2010-\u2027\u2030-\u205e\U0001f300-\U0001faff])*(?<! )")
_OPENING_ANGLE = re.compile(r"<(?! )")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")


# `<b>words</b>`: inline HTML that Markdown passes through and the sanitiser keeps as it is (the only
# markup in ~1.5% of generated bodies, which then cost a full Markdown pass each).
_BOLD = re.compile(r"<b>([^\W_](?:[^\W_]| (?! ))*(?<! ))</b>")
_escape = functools.partial(html.escape, quote=False)  # &, < and >, as Markdown escapes them in text


def _plain_paragraph_html(paragraph: str) -> str | None:
    bare = _BOLD.sub(r"\1", paragraph) if "<b>" in paragraph else paragraph
    if not _PLAIN_PARAGRAPH.fullmatch(bare):
        return None
    if "&" in bare and ";" in bare:
        return None
    if "<" in bare and _OPENING_ANGLE.search(bare):
        return None
    if bare is paragraph:
        return "<p>" + _escape(paragraph) + "</p>"
    html = []
    end = 0
    for match in _BOLD.finditer(paragraph):
        html += [_escape(paragraph[end:match.start()]), "<b>", match[1], "</b>"]
        end = match.end()
    return "<p>" + "".join(html) + _escape(paragraph[end:]) + "</p>"



def render_body(markdown_text: str) -> str:
    """Markdown to HTML, then sanitised: no script, iframe, event handlers or javascript: URLs."""
    if not markdown_text.strip():
        return ""
    html = []
    for paragraph in _PARAGRAPH_BREAK.split(markdown_text.strip("\n")):
        part = _plain_paragraph_html(paragraph)
        if part is None:
            return markdown_html(markdown_text)
        html.append(part)
    return clean_text("\n".join(html))


def markdown_html(markdown_text: str) -> str:
    """The full path of render_body: Python-Markdown ("extra"), then nh3."""
    import nh3

    html = _markdown().reset().convert(markdown_text)
    return clean_text(nh3.clean(html, url_schemes={"http", "https", "mailto"},
                                link_rel="noopener noreferrer nofollow"))


_local = threading.local()


def _markdown():
    """One Markdown converter per thread: building one costs more than converting a typical body."""
    converter = getattr(_local, "markdown", None)
    if converter is None:
        import markdown

        converter = _local.markdown = markdown.Markdown(extensions=["extra"], output_format="html")
    return converter


def item_from_data(data: Any, body: str, path: str, site_url: str = "") -> Item:
    """Build an Item from loaded front matter; raises Invalid with the first thing wrong."""
    if not isinstance(data, dict):
        raise Invalid(f"front matter must be a mapping of fields, got {_kind(data)}")
    title = _text(data, "title", required=True, limit=1000)
    raw_url = data.get("webUrl") or data.get("originalUrl")
    if raw_url is None:
        raise Invalid("missing 'webUrl' (or 'originalUrl'): an item needs a link")
    if not isinstance(raw_url, str):
        raise Invalid(f"'webUrl' must be a URL, got {_kind(raw_url)}")
    url = absolute_url(raw_url, site_url)
    if url is None:
        raise Invalid(f"'webUrl' is not an http(s) URL: {clean_text(raw_url, 80)!r}")
    if "publishedDateTime" not in data:
        raise Invalid("missing required field 'publishedDateTime'")
    published = parse_datetime(data["publishedDateTime"], "publishedDateTime")
    updated = published
    if data.get("updatedDateTime") is not None:
        updated = max(published, parse_datetime(data["updatedDateTime"], "updatedDateTime"))
    explicit_id = data.get("id")
    if explicit_id is not None:
        if isinstance(explicit_id, bool) or not isinstance(explicit_id, str | int):
            raise Invalid(f"'id' must be text, got {_kind(explicit_id)}")
        ident = clean_text(str(explicit_id), 500)
        if not ident:
            raise Invalid("'id' is empty")
    else:
        ident = item_id(url)
    published_flag = data.get("published", True)
    if not isinstance(published_flag, bool):
        raise Invalid(f"'published' must be true or false, got {published_flag!r}")
    return Item(
        id=ident,
        path=path,
        title=title,
        url=url,
        published=published,
        updated=updated,
        excerpt=_text(data, "excerpt", limit=20_000),
        provider=_provider(data.get("provider")),
        topics=_topics(data),
        images=_images(_list(data, "images"), site_url),
        related=_related(_list(data, "related"), site_url),
        body_html=render_body(body),
        draft=not published_flag,
    )


def read_item(raw: bytes, path: str, *, site_url: str = "", max_bytes: int = 1_048_576) -> Item | Problem:
    """Turn one file's bytes into an Item, or a Problem naming what is wrong."""
    try:
        if len(raw) > max_bytes:
            raise Invalid(f"file is {len(raw):,} bytes, over the {max_bytes:,}-byte limit (max_file_bytes)")
        front, body = split_front_matter(decode(raw))
        return item_from_data(load_yaml(front), body, path, site_url)
    except Invalid as exc:
        return Problem(path, str(exc))


def read_topic(raw: bytes, path: str, *, site_url: str = "") -> TopicDef | Problem | None:
    """A topic definition, a Problem, or None when the YAML file is not a topic definition at all."""
    in_topics_dir = "topics" in PurePosixPath(path).parts[:-1]
    try:
        if len(raw) > 262_144:
            raise Invalid(f"topic file is {len(raw):,} bytes, over the 262,144-byte limit")
        data = load_yaml(decode(raw))
        if not isinstance(data, dict):
            if not in_topics_dir:
                return None
            raise Invalid(f"a topic definition must be a mapping, got {_kind(data)}")
        taxonomy = data.get("taxonomy")
        if not in_topics_dir and taxonomy != "topic":
            return None
        if taxonomy not in (None, "topic"):
            return None
        name = _text(data, "name", required=True, limit=200)
        slug_source = _text(data, "_id", limit=80) or name
        slug = slugify(slug_source)
        image = data.get("image")
        image_url = absolute_url(image, site_url) if isinstance(image, str) else None
        return TopicDef(
            slug=slug, name=name, path=path,
            description=_text(data, "description", limit=2000),
            keywords=tuple(clean_text(str(k), 100) for k in _list(data, "keywords")
                           if isinstance(k, str | int | float) and not isinstance(k, bool)),
            hashtags=tuple(clean_text(str(k), 100) for k in _list(data, "hashtags")
                           if isinstance(k, str | int | float) and not isinstance(k, bool)),
            image=image_url or "",
        )
    except Invalid as exc:
        return Problem(path, str(exc))
