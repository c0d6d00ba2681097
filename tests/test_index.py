"""Scanning and indexing: incrementality, last-good versions, duplicates, slugs, drafts, determinism."""

from __future__ import annotations

import datetime as dt
import os

from helpers import SEED, bump_mtime, generate, write_item

from syndicator.documents import Site, feed_document
from syndicator.model import Problem
from syndicator.parsing import READ_CHUNK, parse_file, read_bounded
from syndicator.scan import Scanner
from syndicator.snapshot import build_snapshot

UTC = dt.timezone.utc
GOOD = dict(title="Hello", publishedDateTime="2024-03-01T10:00:00Z", webUrl="https://news.example.org/hello",
            topics=["Azure"])


def test_unchanged_files_are_not_reparsed(corpus):
    scanner = Scanner(corpus)
    first = scanner.scan()
    files = first.stats.seen
    assert scanner.parse_count == files
    second = scanner.scan()
    assert scanner.parse_count == files  # nothing reparsed
    assert second.stats.changed == 0 and second.items == first.items
    target = sorted((corpus / "news").iterdir())[0]
    target.write_text(target.read_text(encoding="utf-8").replace("title: ", "title: Changed ", 1),
                      encoding="utf-8")
    bump_mtime(target)
    third = scanner.scan()
    assert scanner.parse_count == files + 1 and third.stats.changed == 1


def test_good_file_turning_bad_keeps_its_last_good_version(tmp_path):
    path = write_item(tmp_path / "news", "a.md", **GOOD)
    scanner = Scanner(tmp_path)
    assert [i.title for i in scanner.scan().items] == ["Hello"]
    path.write_text("---\ntitle: [half-written\n", encoding="utf-8")
    bump_mtime(path)
    scan = scanner.scan()
    assert [i.title for i in scan.items] == ["Hello"]
    (problem,) = scan.problems
    assert problem.stale and "last good version is still served" in problem.reason
    path.unlink()
    scan = scanner.scan()
    assert scan.items == () and scan.problems == () and scan.stats.removed == 1


def test_editor_leftovers_and_hidden_files_are_ignored(tmp_path):
    write_item(tmp_path / "news", "a.md", **GOOD)
    for name in (".a.md.swp", "a.md~", ".#a.md", ".hidden.md", "#a.md#"):
        (tmp_path / "news" / name).write_text("garbage", encoding="utf-8")
    scan = Scanner(tmp_path).scan()
    assert scan.stats.seen == 1 and scan.problems == ()


def test_symlinks_out_of_the_content_directory_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    write_item(outside, "secret.md", **{**GOOD, "title": "Secret"})
    content = tmp_path / "content"
    write_item(content / "news", "a.md", **GOOD)
    os.symlink(outside / "secret.md", content / "news" / "link.md")
    os.symlink(outside, content / "linkdir")
    os.symlink(content / "news" / "a.md", content / "inside-link.md")  # inside: fine, but same id
    scan = Scanner(content).scan()
    assert "Secret" not in [i.title for i in scan.items]


def test_duplicate_ids_are_reported_and_one_is_served(tmp_path):
    write_item(tmp_path / "news", "a.md", **GOOD)
    write_item(tmp_path / "news", "b.md", **{**GOOD, "title": "Copy", "webUrl": "http://www.news.example.org/hello/"})
    snapshot = build_snapshot(Scanner(tmp_path).scan())
    assert [i.title for i in snapshot.all_items] == ["Hello"]
    (problem,) = snapshot.problems
    assert problem.path == "news/b.md" and "duplicate id" in problem.reason and "news/a.md" in problem.reason


def test_names_folding_to_one_slug_are_reported_not_merged(tmp_path):
    write_item(tmp_path / "news", "a.md", **{**GOOD, "topics": ["C# & .NET"]})
    write_item(tmp_path / "news", "b.md", **{**GOOD, "webUrl": "https://x.org/b", "topics": ["C#-&-.NET"]})
    write_item(tmp_path / "news", "c.md", **{**GOOD, "webUrl": "https://x.org/c", "topics": ["c# & .net", "All"]})
    snapshot = build_snapshot(Scanner(tmp_path).scan())
    assert sorted(snapshot.topics) == ["all-2", "c-sharp-and-net", "c-sharp-and-net-2"]
    assert len(snapshot.topics["c-sharp-and-net"].items) == 2  # same name up to case: one topic
    reasons = " ".join(p.reason for p in snapshot.problems)
    assert "folds to slug 'c-sharp-and-net'" in reasons and "reserved" in reasons


def test_topic_definitions_name_slugs_and_empty_topics_exist(tmp_path):
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics" / "ml.yaml").write_text("_id: ml\nname: Machine Learning\ndescription: Models\n")
    (tmp_path / "_data").mkdir()
    (tmp_path / "_data" / "empty.yaml").write_text("taxonomy: topic\n_id: empty\nname: Empty\n")
    write_item(tmp_path / "news", "a.md", **{**GOOD, "topics": ["machine learning", "Undefined Topic"]})
    snapshot = build_snapshot(Scanner(tmp_path).scan())
    assert sorted(snapshot.topics) == ["empty", "ml", "undefined-topic"]
    assert snapshot.topics["ml"].name == "Machine Learning" and snapshot.topics["ml"].description == "Models"
    assert snapshot.topics["empty"].items == ()


def test_drafts_hidden_and_future_items_appear_when_due(tmp_path):
    write_item(tmp_path / "news", "draft.md", **{**GOOD, "published": False})
    write_item(tmp_path / "news", "future.md", **{**GOOD, "webUrl": "https://x.org/f",
                                                  "publishedDateTime": "2030-01-01T00:00:00Z"})
    scan = Scanner(tmp_path).scan()
    before = build_snapshot(scan, now=dt.datetime(2029, 12, 31, tzinfo=UTC))
    assert before.all_items == () and before.next_due == dt.datetime(2030, 1, 1, tzinfo=UTC)
    after = build_snapshot(scan, now=dt.datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert [i.url for i in after.all_items] == ["https://x.org/f"]


def test_two_scans_of_one_tree_give_byte_identical_feeds(tmp_path, corpus):
    a = build_snapshot(Scanner(corpus).scan())
    b = build_snapshot(Scanner(corpus).scan(), now=dt.datetime.now(UTC) + dt.timedelta(seconds=5))
    site = Site("https://feeds.example.com")
    for slug in ("all", *a.topics):
        for fmt in ("rss", "atom", "json"):
            assert feed_document(a, site, slug, fmt).body == feed_document(b, site, slug, fmt).body


def test_hostile_corpus_keeps_every_good_item(tmp_path):
    generate(tmp_path / "bad", items=300, topics=20, bad=0.15)
    generate(tmp_path / "good", items=300, topics=20, bad=0.0)
    bad_scan, good_scan = Scanner(tmp_path / "bad").scan(), Scanner(tmp_path / "good").scan()
    bad, good = build_snapshot(bad_scan), build_snapshot(good_scan)
    hostile = {p.name for p in (tmp_path / "bad" / "news").iterdir() if p.name.startswith("bad-")}
    assert len(hostile) >= 24  # every case at least twice
    good_names = {p.name for p in (tmp_path / "bad" / "news").iterdir()} - hostile
    # Every good file is read; drafts and withdrawn items (published: false, removed: true) are not served.
    assert good_names <= {i.path.split("/")[-1] for i in bad_scan.items}
    withheld = {i.path.split("/")[-1] for i in bad_scan.items if i.draft}
    assert withheld and good_names - withheld <= {i.path.split("/")[-1] for i in bad.all_items}
    assert not withheld & {i.path.split("/")[-1] for i in bad.all_items}
    served_hostile = {i.path.split("/")[-1] for i in bad.all_items} & hostile
    reported = {p.path.split("/")[-1] for p in bad.problems}
    assert served_hostile | reported == hostile  # each hostile file is either served or reported
    for case in ("bom-crlf", "topics-not-list", "control-chars"):
        assert any(case in name for name in served_hostile), case
    for case in ("broken-yaml", "no-front-matter", "missing-title", "bad-date", "binary", "python-tag",
                 "alias-bomb", "huge-excerpt", "unterminated"):
        assert any(case in p.path for p in bad.problems), case
    assert all(isinstance(p, Problem) and p.reason for p in bad.problems)
    assert len(good_scan.items) == 300 and not good_scan.problems
    assert len(good.all_items) == sum(not i.draft for i in good_scan.items)


def test_vanished_directory_raises_scan_error(tmp_path):
    import pytest

    from syndicator.listing import ScanError

    with pytest.raises(ScanError, match="does not exist"):
        Scanner(tmp_path / "missing").scan()


def test_seed_is_in_the_bundled_content():
    assert SEED.exists()
    snapshot = build_snapshot(Scanner(SEED.parent.parent).scan())
    assert len(snapshot.all_items) >= 40 and len(snapshot.topics) >= 6 and snapshot.problems == ()
    assert any(i.title == "Microsoft builds massive supercomputer for smarter AI" for i in snapshot.all_items)


def _view(snapshot):
    """Everything a snapshot serves, for comparing two of them."""
    return ({slug: (t.name, t.items, t.definition) for slug, t in snapshot.topics.items()},
            snapshot.all_items, snapshot.problems, snapshot.newest, snapshot.next_due)


def test_a_patched_snapshot_equals_a_full_build_after_every_kind_of_change(corpus):
    from syndicator.scan import collect
    from syndicator.snapshot import patched_snapshot

    now = dt.datetime(2030, 1, 1, tzinfo=UTC)
    scanner = Scanner(corpus)
    snapshot = build_snapshot(scanner.scan(), now=now)
    news = sorted((corpus / "news").iterdir())
    existing = sorted(snapshot.topics.values(), key=lambda t: -len(t.items))[0].name
    first, second = (news[i].read_text(encoding="utf-8") for i in (1, 2))

    def edit(path, old, new):
        path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
        bump_mtime(path)

    def move(path, when):
        import re

        text = re.sub(r"^publishedDateTime: .*$", f"publishedDateTime: '{when}'", path.read_text(encoding="utf-8"),
                      count=1, flags=re.M)
        path.write_text(text, encoding="utf-8")
        bump_mtime(path)

    steps = [
        ("edit a title", True, lambda: edit(news[1], "title: ", "title: Edited ")),
        ("move an item in time", True, lambda: move(news[2], "2029-12-31T00:00:00Z")),
        ("delete an item", True, lambda: news[3].unlink()),
        ("add an item to a known topic", True,
         lambda: write_item(corpus / "news", "new.md", **{**GOOD, "topics": [existing]})),
        ("restore two files at once", True, lambda: (news[1].write_text(first, encoding="utf-8"),
                                                     news[2].write_text(second, encoding="utf-8"),
                                                     bump_mtime(news[1]), bump_mtime(news[2]))),
        ("add an item with a new topic name", False,
         lambda: write_item(corpus / "news", "newer.md", **{**GOOD, "webUrl": "https://example.org/n",
                                                            "topics": ["Brand new topic"]})),
        ("turn an item into a draft", False,
         lambda: edit(corpus / "news" / "new.md", "title:", "published: false\ntitle:")),
        ("break an item (its last good version stays)", True, lambda: edit(news[4], "---", "--- [")),
        ("duplicate an id", False, lambda: write_item(corpus / "news", "dup.md", **{**GOOD, "webUrl": "https://example.org/n"})),
        ("resolve the duplicate", False, lambda: (corpus / "news" / "dup.md").unlink()),
        ("break a topic definition (its last good version stays)", True,
         lambda: edit(sorted((corpus / "topics").iterdir())[2], "name:", "name: [unclosed\nx:")),
        ("delete the broken topic definition", False, lambda: sorted((corpus / "topics").iterdir())[2].unlink()),
        ("edit a topic definition", False,
         lambda: edit(sorted((corpus / "topics").iterdir())[0], "name:", "description: Edited\nname:")),
        ("remove a topic definition", False, lambda: sorted((corpus / "topics").iterdir())[1].unlink()),
    ]
    for what, patchable, change in steps:
        change()
        scan = scanner.scan()
        assert scan.delta is not None, what
        # The scan's lists were patched too: they must be what collecting every entry gives.
        assert (scan.items, scan.topic_defs, scan.problems) == collect(scanner._entries), what
        assert (patched_snapshot(snapshot, scan, now) is not None) == patchable, what
        patched = build_snapshot(scan, now=now, previous=snapshot)
        assert _view(patched) == _view(build_snapshot(scan, now=now)), what
        snapshot = patched
        if what == "move an item in time":  # the move really re-sorted: it is the newest item now
            assert snapshot.all_items[0].path == f"news/{news[2].name}"


def test_a_scan_of_the_paths_events_name_sees_what_a_full_walk_sees(corpus, tmp_path):
    scanner = Scanner(corpus)
    scanner.scan()
    news = sorted((corpus / "news").iterdir())
    text = news[0].read_text(encoding="utf-8")
    news[0].write_text(text.replace("title: ", "title: Edited ", 1), encoding="utf-8")
    bump_mtime(news[0])
    news[1].unlink()
    added = write_item(corpus / "news", "added.md", **GOOD)
    (corpus / "news" / "notes.txt").write_text("not content", encoding="utf-8")
    events = [f"news/{news[0].name}", f"news/{news[1].name}", "news/added.md", "news/notes.txt",
              ".git/index", "news/.added.md.swp"]
    before = scanner.parse_count
    targeted = scanner.scan(paths=events)
    assert targeted.stats.changed == 2 and targeted.stats.removed == 1
    assert scanner.parse_count == before + 2  # the edited and the added file, nothing else
    full = Scanner(corpus).scan()
    assert (targeted.items, targeted.topic_defs, targeted.problems) == (full.items, full.topic_defs, full.problems)
    assert any(item.path == f"news/{added.name}" for item in targeted.items)
    # The next full walk takes in the new listing without reparsing anything.
    assert scanner.scan().stats.changed == 0 and scanner.parse_count == before + 2


def test_events_name_files_and_a_directory_event_asks_for_a_full_walk(corpus):
    from watchdog.events import DirCreatedEvent, DirModifiedEvent, FileMovedEvent

    from syndicator.scheduler import Watcher

    seen = []
    watcher = Watcher(str(corpus), rescan=lambda paths: seen.append(paths))
    watcher._note(FileMovedEvent(str(corpus / "news" / ".a.md.swp"), str(corpus / "news" / "a.md")))
    watcher._note(DirModifiedEvent(str(corpus / "news")))  # comes with every file event; adds nothing
    assert watcher._paths == {"news/.a.md.swp", "news/a.md"}
    (corpus / "more").mkdir()
    write_item(corpus / "more", "inside.md", **GOOD)
    watcher._note(DirCreatedEvent(str(corpus / "more")))
    assert watcher._paths is None  # a new directory may hold any number of files: walk everything
    scanner = Scanner(corpus)
    scanner.scan()
    # A symbolic link named like a content file is left to the walk, which knows the rules for links.
    (corpus / "news" / "link.md").symlink_to(corpus / "more" / "inside.md")
    scan = scanner.scan(paths=["news/link.md"])
    assert scan.stats.changed == 1 and any(item.path == "news/link.md" for item in scan.items)


def test_files_are_read_whole_up_to_the_limit_and_refused_past_it(tmp_path):
    """Sizes around the limit and the read's chunk size: every byte up to the limit, then the file's size."""
    limit = 2 * READ_CHUNK + 10
    for size in (0, 1, READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 1, 2 * READ_CHUNK, limit - 1, limit, limit + 1,
                 3 * READ_CHUNK + 7):
        data = bytes(i % 251 for i in range(size))
        (tmp_path / "f").write_bytes(data)
        assert read_bounded(str(tmp_path / "f"), limit) == (data if size <= limit else size), size
    (tmp_path / "big.md").write_bytes(b"x" * (limit + 5))
    problem = parse_file(str(tmp_path), "big.md", "", limit)
    assert isinstance(problem, Problem) and f"file is {limit + 5:,} bytes, over the {limit:,}-byte" in problem.reason
