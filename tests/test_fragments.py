"""Entries rendered once and feeds assembled from them (issue 15): the same bytes as feeds rendered whole,
and rebuilds that reuse what did not change without rendering it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import bump_mtime, parse, write_item

from syndicator import documents, feeds, fragments
from syndicator.config import Settings
from syndicator.export import write_export
from syndicator.generation import feed_files
from syndicator.scan import Scanner
from syndicator.snapshot import build_snapshot

BASE = "https://feeds.example.org/sub"


def every_page(snapshot, site):
    """(slug, kind, fmt, page, FeedPage) of every feed document: all formats, kinds and archive pages."""
    for slug in ("all", *snapshot.topics):
        for kind in (None, *documents.kinds(snapshot, slug)):
            for fmt in feeds.FORMATS:
                for page in (None, *range(1, documents.archive_count(snapshot, site, slug, kind) + 1)):
                    fp, _max_age = documents.feed_page(snapshot, site, slug, fmt, page, kind=kind)
                    yield slug, kind, fmt, page, fp


def test_a_feed_assembled_from_entry_fragments_is_byte_identical_to_one_rendered_whole(corpus):
    snapshot = build_snapshot(Scanner(corpus).scan())
    # A small limit gives every topic archive pages; a hub and a logo give the head its optional parts.
    site = documents.Site(BASE, feed_limit=4, hub_url="https://hub.example.org/", logo="https://x.org/logo.png",
                          icon="https://x.org/icon.png", related_limit=3)
    checked = set()
    for slug, kind, fmt, page, fp in every_page(snapshot, site):
        whole = feeds.render(fp, fmt)
        assembled = feeds.assemble(fp, fmt, feeds.entry_fragments(fp.items, fmt, fp.related_limit))
        assert assembled == whole, (slug, kind, fmt, page)
        checked.add((fmt, kind is not None, page is not None))
    assert len(checked) == 3 * 2 * 2  # every format, per-kind or not, subscription and archive pages
    # A page without entries (the head and the tail alone) too.
    empty = documents.feed_page(snapshot, site, "all", "rss")[0]
    for fmt in feeds.FORMATS:
        from dataclasses import replace

        assert feeds.assemble(replace(empty, items=()), fmt, []) == feeds.render(replace(empty, items=()), fmt)


def test_fragments_kept_in_a_snapshot_give_the_documents_served_without_them(corpus):
    snapshot = build_snapshot(Scanner(corpus).scan())
    site = documents.Site(BASE, feed_limit=4)
    expected = {key: documents.feed_document(snapshot, *key, keep=False).body
                for slug in ("all", *snapshot.topics) for fmt in feeds.FORMATS
                for _rel, key in feed_files(snapshot, site, slug, fmt)}
    for fmt in feeds.FORMATS:
        # Items that share an entry (an item in several topics) are rendered once per format.
        assert fragments.keep(snapshot, fmt, site.related_limit, snapshot.all_items, workers=2) == len(
            snapshot.all_items)
        assert fragments.keep(snapshot, fmt, site.related_limit, snapshot.all_items) == 0  # kept: nothing new
    for key, body in expected.items():
        doc = documents.feed_document(snapshot, *key, keep=False)
        assert doc.body == body, key
    parse(documents.feed_document(snapshot, site, "all", "atom").body)
    fragments.drop(snapshot)
    assert not any(type(key) is fragments.FragmentKey for key in snapshot.memo)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change", ["new item", "edited old item"])
def test_a_rebuild_renders_only_what_changed_and_equals_a_fresh_export(corpus, tmp_path, change):
    settings = Settings(content=str(corpus), base_url=BASE, feed_limit=4, cache_dir="off")
    scanner = Scanner(corpus)
    first = build_snapshot(scanner.scan())
    out = tmp_path / "site"
    before = write_export(first, settings, out)
    topic = max(first.topics.values(), key=lambda t: len(t.items))
    if change == "new item":
        write_item(corpus / "news", "zz-new.md", title="Brand new", publishedDateTime="2026-12-01T00:00:00Z",
                   webUrl="https://x.org/brand-new", topics=[topic.name])
    else:  # the oldest item of the topic: it sits in the first (full) archive page of every feed it is in
        path = corpus / topic.items[-1].path
        path.write_text(path.read_text().replace("title:", "title: Edited", 1))
        bump_mtime(path)
    second = build_snapshot(scanner.scan(), previous=first)
    after = write_export(second, settings, out, previous=(first, before.directory))
    fresh = write_export(second, settings, tmp_path / "fresh")

    assert tree(out) == tree(tmp_path / "fresh")  # what a rebuild gives is what a fresh build gives
    feed_docs = sum(1 for rel in tree(out) if rel.startswith("feeds/") and not rel.endswith(".gz"))
    assert fresh.reused == 0 and 0 < after.reused < feed_docs
    # Untouched topics' feeds and the changed topic's full archive pages are the previous files.
    other = next(t for t in second.topics.values() if t is first.topics.get(t.slug) and t.items)
    page1 = f"feeds/{topic.slug}/archive/1.rss"
    for rel in (f"feeds/{other.slug}.atom", f"feeds/{other.slug}.atom.gz", page1 if change == "new item" else None):
        if rel:
            assert (out / rel).stat().st_ino == (before.directory / rel).stat().st_ino, rel
    if change == "new item":
        assert b"Brand new" in (out / f"feeds/{topic.slug}.rss").read_bytes()
    else:
        assert b"Edited" in (out / page1).read_bytes() and b"Edited" not in (before.directory / page1).read_bytes()


def build(content: Path, out: Path, *extra: str) -> str:
    import subprocess

    from helpers import SYNDICATOR

    result = subprocess.run([*SYNDICATOR, "build", "--content", str(content), "--out", str(out), "--base-url", BASE,
                             "--feed-limit", "4", *extra], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_a_second_build_takes_over_unchanged_pages_without_rendering_them(corpus, tmp_path):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "site"
    assert "not even rendered" not in build(corpus, out, *cache)
    first = out.resolve()
    assert (first / ".pages.json").is_file()
    topic = next(iter(build_snapshot(Scanner(corpus).scan()).topics.values()))
    write_item(corpus / "news", "zz-new.md", title="Brand new", publishedDateTime="2026-12-01T00:00:00Z",
               webUrl="https://x.org/brand-new", topics=[topic.name])
    log = build(corpus, out, *cache)  # another process: only the recorded signatures tell what changed
    assert "feeds not even rendered" in log, log
    build(corpus, tmp_path / "fresh", "--cache-dir", "off")
    assert tree(out) == tree(tmp_path / "fresh")
    assert (out / "feeds/all/archive/1.rss").stat().st_ino == (first / "feeds/all/archive/1.rss").stat().st_ino
    assert b"Brand new" in (out / f"feeds/{topic.slug}.rss").read_bytes()

    # Settings the items depend on (site_url resolves root-relative logos) make every page new.
    log = build(corpus, out, *cache, "--site-url", "https://elsewhere.example.org/")
    assert "not even rendered" not in log
    build(corpus, tmp_path / "fresh2", "--cache-dir", "off", "--site-url", "https://elsewhere.example.org/")
    assert tree(out) == tree(tmp_path / "fresh2")
