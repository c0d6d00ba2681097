"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1): the same information as the XML formats, with a
video's details in `_video` and the related links in `_syndicator` (extension objects)."""

from __future__ import annotations

import datetime as dt
import json

from . import entry as entry_parts
from .feedpage import FeedPage
from .model import Item


def render_json(page: FeedPage) -> bytes:
    """JSON Feed 1.1 bytes with the same information as the XML formats."""
    feed: dict = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": page.title,
        "home_page_url": page.html_url,
        "feed_url": page.self_url["json"],
        "description": page.description or page.title,
        "language": "en",
    }
    if page.image:
        feed["icon"] = page.image
    if page.icon:
        feed["favicon"] = page.icon
    hubs = [{"type": "WebSub", "url": link.href} for link in page.links if link.rel == "hub"]
    if hubs:
        feed["hubs"] = hubs
    archive_links = {link.rel: link.href for link in page.links if link.rel != "hub"}
    if archive_links or page.archive:
        feed["_rfc5005"] = {"archive": page.archive, **archive_links}
    feed["items"] = [_json_item(item, page.related_limit) for item in page.items]
    # No indent: json only uses its C encoder for compact output, ~20x faster on big feeds.
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def json_entry(item: Item, related_limit: int) -> bytes:
    """One item as it stands in the `items` array of `render_json`'s output (compact, so the same bytes)."""
    return json.dumps(_json_item(item, related_limit), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_item(item: Item, related_limit: int) -> dict:
    entry: dict = {
        "id": item.id,
        "url": item.url,
        "title": item.title,
        "content_html": entry_parts.content_html(item, related_limit),
        "date_published": _rfc3339(item.published),
        "date_modified": _rfc3339(item.updated),
    }
    summary = item.excerpt
    if item.kind == "video":
        # The duration in the text too: JSON Feed has no field for it, and a reader shows the summary.
        summary = f"{summary} — {entry_parts.watch_text(item)}" if summary else entry_parts.watch_text(item)
    if summary:
        entry["summary"] = summary
    if item.images:
        entry["image"] = item.images[0].url
    # Files first: a download's file is what the item offers. No text/html attachment for a video's
    # player: nothing treats one as a player (the player is in _video).
    attachments = [{"url": d.url, "mime_type": d.mime_type, "title": entry_parts.download_text(d)}
                   for d in item.downloads]
    if item.kind != "video":
        attachments += [{"url": image.url, "mime_type": image.mime_type,
                         **({"title": image.title} if image.title else {})} for image in item.images]
    if attachments:
        entry["attachments"] = attachments
    if item.topics:
        entry["tags"] = list(item.topics)
    authors = [{"name": person.name, **({"url": person.url} if person.url else {})} for person in item.authors]
    if item.provider:
        provider: dict = {"name": item.provider.name}
        if item.provider.domain:
            provider["url"] = f"https://{item.provider.domain}/"
        if item.provider.logo:
            provider["avatar"] = item.provider.logo
        authors.append(provider)
    if authors:
        entry["authors"] = authors
    if item.kind == "video" and item.video is not None:
        entry["_video"] = {**({"duration_in_seconds": item.video.duration} if item.video.duration else {}),
                           **({"player": item.video.player} if item.video.player else {})}
    shown = entry_parts.related(item, related_limit)
    if shown:
        entry["_syndicator"] = {"related_count": len(item.related), "related": [
            {"title": rel.title, "url": rel.url,
             **({"date_published": _rfc3339(rel.published)} if rel.published else {}),
             **({"provider": rel.provider} if rel.provider else {})}
            for rel in shown
        ]}
    return entry


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


