"""An entry as every format shows it: its HTML content, who wrote it, what it offers (a video to watch, a
file to download), and the related links a feed lists. Pure functions of an `Item`; feeds.py and
jsonfeed.py put these into their formats, the page templates use the same wording.
"""

from __future__ import annotations

import html

from .model import Download, Image, Item, Related

DEFAULT_RELATED = 10


def duration_text(seconds: int | None) -> str:
    """13:34, or 1:29:03 past the hour; "" when unknown."""
    if not seconds:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def watch_text(item: Item) -> str:
    """"Watch the video (13:34)" (without the duration when it is unknown)."""
    duration = duration_text(item.video.duration) if item.video else ""
    return f"Watch the video ({duration})" if duration else "Watch the video"


def download_text(download: Download) -> str:
    """"Download Source Code (.zip)": the action's title and the file's extension."""
    title = download.title or "Download"
    return f"{title} ({download.extension})" if download.extension else title


def byline(item: Item) -> str:
    """The people who wrote the item and, beside them, its provider: "April Dunnam (TechCrunch)"."""
    people = ", ".join(person.name for person in item.authors)
    provider = item.provider.name if item.provider else ""
    if people and provider and provider != people:
        return f"{people} ({provider})"
    return people or provider


def related(item: Item, limit: int = DEFAULT_RELATED) -> tuple[Related, ...]:
    """The related links a feed or page shows: the first `limit`, as listed."""
    return item.related[:limit]


def thumbnail(item: Item) -> Image | None:
    return item.images[0] if item.images else None


def _image_html(image: Image, alt: str, href: str = "") -> str:
    size = f' width="{image.width}" height="{image.height}"' if image.width and image.height else ""
    tag = f'<img src="{html.escape(image.url)}" alt="{html.escape(alt)}"{size}>'
    return f'<p><a href="{html.escape(href)}">{tag}</a></p>' if href else f"<p>{tag}</p>"


def content_html(item: Item, related_limit: int = DEFAULT_RELATED) -> str:
    """The entry's HTML: excerpt, what the item offers, images, sanitised body, a Related list and the
    link to the story. All text escaped once; never an iframe (readers that embed players do it from the
    entry's link)."""
    parts = []
    if item.excerpt:
        parts.append(f"<p>{html.escape(item.excerpt)}</p>")
    first = thumbnail(item)
    if item.kind == "video":
        if first is not None:
            parts.append(_image_html(first, first.title or item.title, item.url))
        parts.append(f'<p><a href="{html.escape(item.url)}">{html.escape(watch_text(item))}</a></p>')
    elif item.downloads:
        if first is not None:
            parts.append(_image_html(first, first.title or item.title, item.downloads[0].url))
        for download in item.downloads:
            parts.append(f'<p><a href="{html.escape(download.url)}">{html.escape(download_text(download))}</a>'
                         + (f" ({html.escape(download.attribution)})" if download.attribution else "") + "</p>")
    else:
        parts.extend(_image_html(image, image.title or item.title) for image in item.images)
    if item.body_html:
        parts.append(item.body_html)
    shown = related(item, related_limit)
    if shown:
        rows = []
        for rel in shown:
            via = f" ({html.escape(rel.provider)})" if rel.provider else ""
            rows.append(f'<li><a href="{html.escape(rel.url)}">{html.escape(rel.title)}</a>{via}</li>')
        parts.append("<h3>Related</h3><ul>" + "".join(rows) + "</ul>")
    if item.kind != "video":
        parts.append(f'<p><a href="{html.escape(item.url)}">Read the full story</a></p>')
    return "\n".join(parts)
