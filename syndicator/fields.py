"""Typed checks of front matter fields: each returns a clean value or raises Invalid naming the field."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from typing import Any

from .model import Image, Invalid, Provider, Related
from .text import MAX_TEXT, clean_text
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
    text = clean_text(str(value), limit)
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
                            title=clean_text(title, 500) if isinstance(title, str) else ""))
    return tuple(images)


def provider_field(value: Any) -> Provider | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Provider(name=clean_text(value, 200)) if value.strip() else None
    if not isinstance(value, dict):
        raise Invalid(f"'provider' must be a mapping with a name, got {kind_of(value)}")
    name = text_field(value, "name", limit=200)
    domain = text_field(value, "domain", limit=200)
    return _shared_provider(name or domain, domain) if (name or domain) else None


# A site has tens of providers and 100k items: items share one Provider object per (name, domain),
# which the parse cache's pickles then store once per part instead of once per item.
@functools.lru_cache(maxsize=1024)
def _shared_provider(name: str, domain: str) -> Provider:
    return Provider(name=name, domain=domain)


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
        provider = provider_field(entry.get("provider"))
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
        name = clean_text(str(entry), 200)
        if name and name not in names:
            names.append(sys.intern(name))  # a name is in hundreds of items: one string, pickled once per part
    return tuple(names)

