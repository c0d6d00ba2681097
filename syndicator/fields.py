"""Typed checks of front matter fields: each returns a clean value or raises Invalid naming the field."""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
import sys
from typing import Any

from .model import Download, Image, Invalid, Person, Provider, Related, Video
from .text import MAX_TEXT, plain_text
from .urls import absolute_url

UTC = dt.timezone.utc



def text_field(data: dict, key: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise Invalid(f"missing required field '{key}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"'{key}' must be text, got {kind_of(value)}")
    text = plain_text(str(value), limit)
    if required and not text:
        raise Invalid(f"'{key}' is empty")
    return text


def kind_of(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list"}
    return names.get(type(value), type(value).__name__)


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
        raise Invalid(f"'{key}' must be a date/time, got {kind_of(value)}")
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


def list_field(data: dict, key: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"'{key}' must be a list, got {kind_of(value)}")
    return value


def images_field(value: list, site_url: str, key: str = "images") -> tuple[Image, ...]:
    images = []
    for entry in value:
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise Invalid(f"'{key}' entries must be mappings with a url, got {kind_of(entry)}")
        raw = entry.get("url")
        url = absolute_url(raw, site_url) if isinstance(raw, str) else None
        if url is None:
            continue  # relative without site_url, or not http(s): never reaches a feed
        title = entry.get("title")
        images.append(Image(url=url, width=_int_or_none(entry.get("width")),
                            height=_int_or_none(entry.get("height")),
                            title=plain_text(title, 500) if isinstance(title, str) else ""))
    return tuple(images)


def provider_field(value: Any, site_url: str = "") -> Provider | None:
    """The provider: a name (and domain); its logo is the first of its `images` that is a usable URL."""
    if value is None:
        return None
    if isinstance(value, str):
        return _shared_provider(plain_text(value, 200), "", "") if value.strip() else None
    if not isinstance(value, dict):
        raise Invalid(f"'provider' must be a mapping with a name, got {kind_of(value)}")
    name = text_field(value, "name", limit=200)
    domain = text_field(value, "domain", limit=200)
    logos = images_field(list_field(value, "images"), site_url, "provider.images")
    return _shared_provider(name or domain, domain, logos[0].url if logos else "") if (name or domain) else None


# A site has tens of providers and 100k items: items share one Provider object per (name, domain, logo),
# which the parse cache's pickles then store once per part instead of once per item.
@functools.lru_cache(maxsize=1024)
def _shared_provider(name: str, domain: str, logo: str) -> Provider:
    return Provider(name=name, domain=domain, logo=logo)


def authors_field(provider: Any, site_url: str) -> tuple[Person, ...]:
    """The people of `provider.authors` (names, or mappings with a name and an optional url)."""
    if not isinstance(provider, dict) or provider.get("authors") is None:
        return ()
    people = []
    for entry in list_field(provider, "authors"):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise Invalid(f"'provider.authors' entries must be names or mappings, got {kind_of(entry)}")
        name = text_field(entry, "name", limit=200)
        raw = entry.get("url")
        if name:
            people.append(Person(name, (absolute_url(raw, site_url) or "") if isinstance(raw, str) else ""))
    return tuple(people)


# The src of an iframe (featuredContent holds the player's iframe as HTML); the iframe itself is never kept.
_IFRAME_SRC = re.compile(r"""<iframe\b[^>]*?\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def video_field(data: dict) -> Video:
    """The player's https URL (from `featuredContent`) and the duration in seconds (ISO 8601 `length`);
    either may be missing, and a `length` that is no duration is ignored."""
    player = ""
    featured = data.get("featuredContent")
    if isinstance(featured, str) and (match := _IFRAME_SRC.search(featured)):
        src = html.unescape(next(group for group in match.groups() if group is not None)).strip()
        if src.startswith("//"):
            src = "https:" + src
        if src.startswith("https://") and (url := absolute_url(src, "")):
            player = url
    return Video(player=player, duration=duration_seconds(data.get("length")))


def duration_seconds(value: Any) -> int | None:
    """Whole seconds of an ISO 8601 duration (`PT13M34S` -> 814), or None when it is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) if 0 < value < 10**7 else None
    if not isinstance(value, str):
        return None
    import isodate

    try:
        parsed = isodate.parse_duration(value.strip())
        seconds = parsed.total_seconds() if isinstance(parsed, dt.timedelta) else None
    except (isodate.ISO8601Error, ValueError, OverflowError, TypeError):
        return None
    return int(seconds) if seconds is not None and 0 < seconds < 10**7 else None


def actions_field(value: list, site_url: str) -> tuple[tuple[Download, ...], tuple[Related, ...]]:
    """`actions`: those of type `download` are the files the item offers; the others ("View on GitHub")
    are links with their title."""
    downloads, links = [], []
    for entry in value:
        if not isinstance(entry, dict):
            raise Invalid(f"'actions' entries must be mappings with a url, got {kind_of(entry)}")
        raw = entry.get("url")
        url = absolute_url(raw, site_url) if isinstance(raw, str) else None
        if url is None:
            continue
        title = text_field(entry, "title", limit=200)
        if entry.get("type") == "download":
            downloads.append(Download(url, title, text_field(entry, "attribution", limit=200)))
        else:
            links.append(Related(title=title or url, url=url))
    return tuple(downloads), tuple(links)


def related_field(value: list, site_url: str) -> tuple[Related, ...]:
    related = []
    for entry in value:
        if not isinstance(entry, dict):
            raise Invalid(f"'related' entries must be mappings, got {kind_of(entry)}")
        raw = entry.get("webUrl") or entry.get("originalUrl") or entry.get("url")
        url = absolute_url(raw, site_url) if isinstance(raw, str) else None
        title = text_field(entry, "title", limit=500)
        if url is None or not title:
            continue  # a related link needs somewhere to go and something to say
        published = None
        if entry.get("publishedDateTime") is not None:
            try:
                published = parse_datetime(entry["publishedDateTime"], "related.publishedDateTime")
            except Invalid:
                published = None
        provider = provider_field(entry.get("provider"), site_url)
        related.append(Related(title=title, url=url, excerpt=text_field(entry, "excerpt", limit=2000),
                               published=published, provider=provider.name if provider else ""))
    return tuple(related)


def topics_field(data: dict) -> tuple[str, ...]:
    value = data.get("topics")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]  # `topics: Azure` is one topic; a comma may belong to a name
    if not isinstance(value, list):
        raise Invalid(f"'topics' must be a list of names, got {kind_of(value)}")
    names: list[str] = []
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, str | int | float):
            raise Invalid(f"'topics' entries must be names, got {kind_of(entry)}")
        name = plain_text(str(entry), 200)
        if name and name not in names:
            names.append(sys.intern(name))  # a name is in hundreds of items: one string, pickled once per part
    return tuple(names)

