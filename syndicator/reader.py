"""One file's bytes to an `Item`, a `TopicDef` or a `Problem`.

Everything read from a file is checked field by field; a wrong type or a broken file becomes a
`Problem(path, reason)` with a reason a person can act on, never an exception.
"""

from __future__ import annotations

import sys
from pathlib import PurePosixPath
from typing import Any

from .body import render_body
from .fields import (
    actions_field,
    authors_field,
    images_field,
    kind_of,
    list_field,
    parse_datetime,
    provider_field,
    related_field,
    text_field,
    topics_field,
    video_field,
)
from .frontmatter import load_yaml, split_front_matter
from .model import Invalid, Item, Problem, TopicDef
from .text import clean_text, decode, drop_empty_paragraphs, plain_text
from .urls import absolute_url, item_id, slugify


def item_from_data(data: Any, body: str, path: str, site_url: str = "") -> Item:
    """Build an Item from loaded front matter; raises Invalid with the first thing wrong."""
    if not isinstance(data, dict):
        raise Invalid(f"front matter must be a mapping of fields, got {kind_of(data)}")
    title = text_field(data, "title", required=True, limit=1000)
    raw_url = data.get("webUrl") or data.get("originalUrl")
    if raw_url is None:
        raise Invalid("missing 'webUrl' (or 'originalUrl'): an item needs a link")
    if not isinstance(raw_url, str):
        raise Invalid(f"'webUrl' must be a URL, got {kind_of(raw_url)}")
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
            raise Invalid(f"'id' must be text, got {kind_of(explicit_id)}")
        ident = clean_text(str(explicit_id), 500)
        if not ident:
            raise Invalid("'id' is empty")
    else:
        ident = item_id(url)
    hidden = not _flag(data, "published", True) or _flag(data, "removed", False) or _flag(data, "deleted", False)
    kind = _kind(data.get("type"))
    downloads, action_links = actions_field(list_field(data, "actions"), site_url)
    provider = data.get("provider")
    return Item(
        id=ident,
        path=path,
        title=title,
        url=url,
        published=published,
        updated=updated,
        excerpt=text_field(data, "excerpt", limit=20_000),
        provider=provider_field(provider, site_url),
        topics=topics_field(data),
        images=images_field(list_field(data, "images"), site_url),
        # The item's own links ("View on GitHub") first, then the related articles as listed.
        related=action_links + related_field(list_field(data, "related"), site_url),
        body_html=drop_empty_paragraphs(render_body(body)),
        draft=hidden,
        kind=kind,
        video=video_field(data) if kind == "video" else None,
        downloads=downloads,
        authors=authors_field(provider, site_url),
    )


def _flag(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise Invalid(f"'{key}' must be true or false, got {value!r}")
    return value


def _kind(value: Any) -> str:
    """The item's kind (`type`) as a URL-safe name: article, video, download, or another kind's slug."""
    if value is None:
        return "article"
    if isinstance(value, bool) or not isinstance(value, str):
        raise Invalid(f"'type' must be a kind's name (article, video, download, ...), got {kind_of(value)}")
    kind = slugify(plain_text(value, 40)) if value.strip() else "article"
    return sys.intern(kind)


def read_item(raw: bytes, path: str, *, site_url: str = "", max_bytes: int = 1_048_576) -> Item | Problem:
    """Turn one file's bytes into an Item, or a Problem naming what is wrong."""
    try:
        if len(raw) > max_bytes:
            raise Invalid(f"file is {len(raw):,} bytes, over the {max_bytes:,}-byte limit (max_file_bytes)")
        front, body = split_front_matter(decode(raw))
        return item_from_data(load_yaml(front, first_line=2), body, path, site_url)
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
            raise Invalid(f"a topic definition must be a mapping, got {kind_of(data)}")
        taxonomy = data.get("taxonomy")
        if not in_topics_dir and taxonomy != "topic":
            return None
        if taxonomy not in (None, "topic"):
            return None
        name = text_field(data, "name", required=True, limit=200)
        slug_source = text_field(data, "_id", limit=80) or name
        slug = slugify(slug_source)
        image = data.get("image")
        image_url = absolute_url(image, site_url) if isinstance(image, str) else None
        return TopicDef(
            slug=slug, name=name, path=path,
            description=text_field(data, "description", limit=2000),
            keywords=tuple(clean_text(str(k), 100) for k in list_field(data, "keywords")
                           if isinstance(k, str | int | float) and not isinstance(k, bool)),
            hashtags=tuple(clean_text(str(k), 100) for k in list_field(data, "hashtags")
                           if isinstance(k, str | int | float) and not isinstance(k, bool)),
            image=image_url or "",
            shortname=text_field(data, "shortname", limit=200),
            parent=text_field(data, "parent", limit=200),
            aliases=tuple(dict.fromkeys(
                name for name in (plain_text(str(a), 200) for a in list_field(data, "aliases")
                                  if isinstance(a, str | int | float) and not isinstance(a, bool)) if name)),
        )
    except Invalid as exc:
        return Problem(path, str(exc))
