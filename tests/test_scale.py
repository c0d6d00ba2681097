"""Scale features: parse cache, parallel parsing, event-driven rescans, static export."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import SYNDICATOR, bump_mtime, generate, poll, write_item

from syndicator.config import Settings
from syndicator.documents import FeedKey
from syndicator.model import Image, Item, Provider, Related
from syndicator.scan import Scanner
from syndicator.scheduler import Rescanner, first_rescan, make_scanner
from syndicator.snapshot import Publisher, restored_snapshot
from syndicator.web import app_state, create_app

BASE = "https://feeds.example.com/news"


# ----------------------------------------------------------------------------- parse cache


def test_warm_start_reparses_nothing_and_gives_the_same_items(corpus, tmp_path):
    cache = tmp_path / "cache" / "parse.pickle"
    cold = Scanner(corpus, cache_file=cache)
    first = cold.scan()
    assert cold.parse_count == first.stats.seen > 0 and cache.is_file()
    warm = Scanner(corpus, cache_file=cache)
    second = warm.scan()
    assert warm.parse_count == 0
    assert second.items == first.items and second.problems == first.problems
    # Items are tuples underneath, so == alone would not see them come back as plain tuples: check the
    # types the feeds read attributes of survive the cache, down to every image, related link and provider.
    assert {type(item) for item in second.items} == {Item}
    parts = [part for item in second.items for part in (*item.images, *item.related, item.provider) if part]
    assert {type(part) for part in parts} == {Image, Related, Provider}
    # A file changed while the service was down is reparsed, and only that one.
    target = sorted((corpus / "news").iterdir())[3]
    target.write_text(target.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1), encoding="utf-8")
    bump_mtime(target)
    third = Scanner(corpus, cache_file=cache)
    third.scan()
    assert third.parse_count == 1


def test_a_warm_start_walks_in_a_second_process_while_loading_the_cache(corpus, tmp_path):
    cache = tmp_path / "cache" / "parse.pickle"
    Scanner(corpus, cache_file=cache).scan()
    target = sorted((corpus / "news").iterdir())[5]
    target.write_text(target.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1), encoding="utf-8")
    bump_mtime(target)
    warm = Scanner(corpus, cache_file=cache, workers=2)
    assert warm._prewalk is not None  # started before the cache was unpickled
    scan = warm.scan()
    assert warm._prewalk is None and warm.parse_count == 1  # the edit made before the start was seen
    assert scan.items == Scanner(corpus).scan().items


def _pending_cache_write(corpus: Path, tmp_path: Path) -> Scanner:
    from syndicator.snapshot import build_snapshot

    scanner = Scanner(corpus, cache_file=tmp_path / "cache" / "parse.pickle", autosave=False)
    scanner.save(build_snapshot(scanner.scan()), delay=3600)
    assert scanner.cache._pending is not None
    return scanner


def test_a_forked_child_forgets_the_cache_write_its_parent_has_pending(corpus, tmp_path):
    """A gunicorn worker forked while the master has a cache write pending neither writes it nor keeps it."""
    scanner = _pending_cache_write(corpus, tmp_path)
    pid = os.fork()
    if pid == 0:  # the child: exit at once, saying what it inherited
        os._exit(0 if scanner.cache._pending is None and not scanner.cache._write_lock.locked() else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert scanner.cache._pending is not None and not scanner.cache._write_lock.locked()
    scanner.cache.flush()
    assert scanner.cache.path.is_file() and Scanner(corpus, cache_file=scanner.cache.path).scan().stats.parsed == 0


def test_a_fork_waits_for_a_cache_write_in_progress(corpus, tmp_path):
    """While a cache write runs (here: holds the write lock), a fork does not happen: the child would
    inherit the half-built pickle. The fork goes ahead once the write is over."""
    import threading

    scanner = _pending_cache_write(corpus, tmp_path)
    forked = threading.Event()
    children: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        children.append(pid)
        forked.set()

    with scanner.cache._write_lock:  # a write in progress
        forker = threading.Thread(target=fork)
        forker.start()
        forker.join(timeout=0.5)  # long enough for an unguarded fork to happen
        assert not forked.is_set()
    forker.join(timeout=30)
    assert forked.is_set() and os.waitpid(children[0], 0)[1] == 0


def test_serve_writes_its_cold_start_cache_before_forking_and_restarts_warm(tmp_path):
    """`serve` writes the parse cache of its cold start before gunicorn forks the workers (so they share
    the pages pickling touched), and a restart, even right after, parses nothing."""
    from helpers import serve

    corpus = generate(tmp_path / "c", items=600, topics=8)
    cache_dir = tmp_path / "cache"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with serve(corpus, "--cache-dir", str(cache_dir), "--workers", "2", log=first_log):
        pass
    with serve(corpus, "--cache-dir", str(cache_dir), "--workers", "2", log=second_log):
        pass
    first, second = first_log.read_text(), second_log.read_text()
    assert re.search(r"rescan files=(\d+) changed=\1 parsed=\1 removed=0 .* published=yes", first), first
    assert -1 < first.find(" written: ") < first.find("Booting worker"), first
    assert re.search(r"rescan files=(\d+) changed=0 parsed=0 removed=0 .* published=yes", second), second


def test_event_driven_scans_keep_the_listing_and_a_restart_restores_the_stored_snapshot(corpus, tmp_path):
    """After a scan of the files that events named, an in-place edit keeps the directory listing exact (the
    next walk is the cheap no-change case, and a restart on the cache written then serves its stored
    snapshot); a deletion leaves none to store, and a restart still serves the stored snapshot once its
    own walk finds every file as it was."""
    from syndicator.listing import walk
    from syndicator.snapshot import build_snapshot

    cache = tmp_path / "cache" / "parse.pickle"
    scanner = Scanner(corpus, cache_file=cache, autosave=False)
    scanner.scan()
    news = sorted((corpus / "news").iterdir())
    edited, deleted = news[-1], news[0]
    edited.write_text(edited.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1), encoding="utf-8")
    bump_mtime(edited)
    scan = scanner.scan(paths=[edited.relative_to(corpus).as_posix()])
    assert scan.stats.parsed == 1 and scanner._listing == walk(corpus)
    for listed in (True, False):
        if not listed:
            deleted.unlink()
            scan = scanner.scan(paths=[deleted.relative_to(corpus).as_posix()])
            assert scan.stats.removed == 1 and scanner._listing is None
        snapshot = build_snapshot(scan)
        scanner.save(snapshot)
        scanner.cache.flush()
        warm = Scanner(corpus, cache_file=cache, autosave=False)
        warm_scan = warm.scan()
        restored = restored_snapshot(warm, warm_scan)
        assert warm_scan.stats.parsed == 0 and restored is not None
        assert restored.all_items == snapshot.all_items and dict(restored.topics) == dict(snapshot.topics)


def test_gunicorn_conf_workers_write_a_pending_cache_when_stopped(tmp_path):
    """Under `gunicorn -c deploy/gunicorn.conf.py`, a worker stopped soon after an edit writes the parse
    cache with that edit in it first (its delayed write would otherwise be lost): the next start parses
    nothing."""
    import sys

    from helpers import ROOT, free_port, stop, wait_http

    from syndicator.scan import Scanner

    corpus = generate(tmp_path / "c", items=200, topics=4)
    cache_dir, log = tmp_path / "cache", tmp_path / "gunicorn.log"
    port = free_port()
    env = {**os.environ, "SYNDICATOR_CONTENT": str(corpus), "SYNDICATOR_PORT": str(port),
           "SYNDICATOR_CACHE_DIR": str(cache_dir), "SYNDICATOR_WORKERS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", proc=proc, log=log)
        newest = sorted((corpus / "news").iterdir())[-1]
        newest.write_text(newest.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1), encoding="utf-8")
        bump_mtime(newest)
        poll(lambda: b"Edited" in urllib.request.urlopen(base + "/feeds/all.rss").read(), 30, "the edit served")
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()
    cache = Settings(content=str(corpus), cache_dir=str(cache_dir)).cache_file
    warm = Scanner(corpus, cache_file=cache)
    assert warm.scan().stats.parsed == 0 and any(i.title.startswith("Edited ") for i in warm.scan().items)


def _rescanner(corpus: Path, cache: Path) -> Rescanner:
    settings = Settings(content=str(corpus), cache_dir=str(cache), base_url=BASE, parse_workers=1)
    return Rescanner(settings, Publisher(), site=None)


def _feeds(publisher: Publisher) -> dict[str, bytes]:
    from syndicator import documents

    site = documents.Site(BASE)
    snapshot = publisher.snapshot
    return {f"{slug}.{fmt}": documents.feed_document(snapshot, site, slug, fmt).body
            for slug in ("all", *snapshot.topics) for fmt in ("rss", "atom", "json")}


def test_warm_restart_serves_the_stored_snapshot_identical_to_a_cold_start(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cold = _rescanner(corpus, cache)
    assert cold.run_once()
    cold.flush()  # the cache is written in the background, after a quiet period
    warm = _rescanner(corpus, cache)
    assert warm.scanner._restored is not None  # the cache holds the published snapshot

    def no_build(*args, **kwargs):
        raise AssertionError("a warm start on unchanged content must not index anything")

    monkeypatch.setattr("syndicator.scheduler.build_snapshot", no_build)
    assert warm.run_once()
    assert warm.scanner.parse_count == 0
    assert _feeds(warm.publisher) == _feeds(cold.publisher)
    assert warm.publisher.snapshot.problems == cold.publisher.snapshot.problems
    warm.flush()


def test_warm_restart_rebuilds_when_files_changed_or_items_fell_due_while_down(corpus, tmp_path):
    cache = tmp_path / "cache"
    future = write_item(corpus / "news", "future.md", title="From the future", webUrl="https://example.org/f",
                        publishedDateTime="2999-01-01T00:00:00Z", topics=["Azure"])
    first = _rescanner(corpus, cache)
    assert first.run_once()
    first.flush()
    assert "From the future" not in {i.title for i in first.publisher.snapshot.all_items}

    # The item fell due while the service was down: the stored snapshot is stale, so it is rebuilt.
    import datetime as dt

    later = _rescanner(corpus, cache)
    assert later.run_once(now=dt.datetime(3000, 1, 1, tzinfo=dt.timezone.utc))
    assert "From the future" in {i.title for i in later.publisher.snapshot.all_items}

    # A file edited while down: reparsed, indexed and served, not the stored snapshot.
    future.unlink()
    target = sorted((corpus / "news").iterdir())[2]
    target.write_text(target.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1), encoding="utf-8")
    bump_mtime(target)
    edited = _rescanner(corpus, cache)
    assert edited.run_once()
    titles = {i.title for i in edited.publisher.snapshot.all_items}
    assert edited.scanner.parse_count == 1 and any(t.startswith("Edited ") for t in titles)
    assert "From the future" not in titles
    for rescanner in (later, edited):
        rescanner.flush()  # no cache write left pending after the test


def test_a_change_taken_in_by_a_failed_rescan_is_served_by_the_next_one(corpus, tmp_path, monkeypatch):
    from syndicator import documents

    rescanner = _rescanner(corpus, tmp_path / "cache")
    assert rescanner.run_once()
    news = sorted((corpus / "news").iterdir())
    for path, tag in ((news[1], "First "), (news[2], "Second ")):
        path.write_text(path.read_text(encoding="utf-8").replace("title: ", f"title: {tag}", 1), encoding="utf-8")
        bump_mtime(path)
        if tag == "First ":  # this rescan scans the edit, then fails before publishing
            def broken(*args, **kwargs):
                raise OSError("injected")

            with monkeypatch.context() as patch:
                patch.setattr(documents, "carry_over", broken)
                assert not rescanner.run_once()
        else:
            assert rescanner.run_once()
    titles = {item.title for item in rescanner.publisher.snapshot.all_items}
    assert any(t.startswith("First ") for t in titles) and any(t.startswith("Second ") for t in titles)
    rescanner.flush()


def test_a_parallel_cold_start_caches_the_pickles_its_parsers_made(tmp_path):
    """A cold start with parallel parsing writes the cache from the chunks its parsers already pickled;
    reading it back gives the same entries, and a stored snapshot made of those very items. A broken file
    that keeps its last good version keeps it through the next save and load too."""
    from syndicator.snapshot import build_snapshot

    corpus = generate(tmp_path / "c", items=500, topics=10, bad=0.05)
    cache = tmp_path / "cache" / "parse.pickle"
    cold = Scanner(corpus, cache_file=cache, workers=2, autosave=False)
    scan = cold.scan()
    assert cold._parts is not None and len(cold._parts) > 1  # several parse chunks, each a part
    snapshot = build_snapshot(scan)
    cold.save(snapshot)
    cold.cache.flush()
    assert cold._parts is None  # written once, then dropped

    warm = Scanner(corpus, cache_file=cache, workers=2, autosave=False)
    assert warm._entries == cold._entries
    warm_scan = warm.scan()
    assert warm_scan.stats.parsed == 0
    restored = restored_snapshot(warm, warm_scan)
    assert restored is not None and restored.all_items == snapshot.all_items
    assert dict(restored.topics) == dict(snapshot.topics)
    assert restored.basis.by_id == snapshot.basis.by_id
    # One object per item, not a copy per reference: every list of the snapshot holds the cache's results.
    results = {id(entry.result) for entry in warm._entries.values()}
    assert all(id(i) in results for i in restored.all_items + warm._last[0] + tuple(restored.basis.by_id.values()))
    assert all(id(i) in results for topic in restored.topics.values() for i in topic.items)
    item = restored.all_items[0]
    assert warm._entries[item.path].result is item

    good = corpus / item.path
    good.write_text("---\ntitle: [broken\n---\n", encoding="utf-8")
    bump_mtime(good)
    stale_scan = warm.scan()
    assert any(p.path == item.path and p.stale for p in stale_scan.problems)
    warm.save(build_snapshot(stale_scan))
    warm.cache.flush()
    third = Scanner(corpus, cache_file=cache, autosave=False)
    assert third._entries == warm._entries
    assert third._entries[item.path].last_good == item
    # the stale version is no cached result, so the stored snapshot's lists that hold it keep it too
    third_snapshot = restored_snapshot(third, third.scan())
    assert third_snapshot is not None and item in third_snapshot.all_items
    assert third_snapshot.basis.by_id[item.id] == item


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_cache_is_never_trusted(corpus, tmp_path, damage):
    cache = tmp_path / "cache" / "parse.pickle"
    expected = Scanner(corpus, cache_file=cache).scan().items
    data = cache.read_bytes()
    cache.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    scanner = Scanner(corpus, cache_file=cache)
    assert scanner.scan().items == expected
    assert scanner.parse_count == len(list((corpus / "news").iterdir())) + len(list((corpus / "topics").iterdir()))


def test_cache_from_other_settings_or_unsafe_permissions_is_ignored(corpus, tmp_path):
    cache = tmp_path / "cache" / "parse.pickle"
    Scanner(corpus, cache_file=cache).scan()
    other = Scanner(corpus, cache_file=cache, site_url="https://other.example")
    other.scan()
    assert other.parse_count > 0  # results depend on site_url, so the cache did not apply
    Scanner(corpus, cache_file=cache).scan()
    os.chmod(cache, 0o666)
    unsafe = Scanner(corpus, cache_file=cache)
    unsafe.scan()
    assert unsafe.parse_count > 0


def test_cache_is_safe_to_delete(corpus, tmp_path):
    cache = tmp_path / "cache" / "parse.pickle"
    items = Scanner(corpus, cache_file=cache).scan().items
    cache.unlink()
    assert Scanner(corpus, cache_file=cache).scan().items == items


def test_settings_put_the_cache_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = Settings(content="content").cache_file
    assert path.parent == tmp_path / "xdg" / "syndicator" and path.name.startswith("parse-")
    assert Settings(content="content", cache_dir="off").cache_file is None


def _pid_and_square(state, task):
    if task == state:
        raise ValueError(f"task {task} failed")
    return os.getpid(), task * task


def test_fork_map_keeps_task_order_uses_this_process_too_and_raises_task_errors():
    """Results come back in task order, computed both here and in the forked process; a task's exception
    reaches the caller, wherever the task ran."""
    from syndicator.parallel import fork_map

    results = fork_map(_pid_and_square, range(40), None, 2)
    assert [square for _, square in results] == [n * n for n in range(40)]
    assert os.getpid() in {pid for pid, _ in results} and len({pid for pid, _ in results}) == 2
    for failing in (0, 39):  # the first task runs in the forked process, later ones on either side
        with pytest.raises(ValueError, match=f"task {failing} failed"):
            fork_map(_pid_and_square, range(40), failing, 2)


def test_parallel_parsing_gives_the_same_result_as_serial(tmp_path):
    corpus = generate(tmp_path / "c", items=900, topics=30, bad=0.05)
    serial = Scanner(corpus, workers=1).scan()
    parallel = Scanner(corpus, workers=2).scan()
    assert parallel.items == serial.items and parallel.problems == serial.problems


# ----------------------------------------------------------------------------- change detection


def test_a_change_is_picked_up_by_filesystem_events_without_waiting_for_the_interval(corpus):
    settings = Settings(content=str(corpus), interval=3600, fs_events=1)
    publisher = Publisher()
    rescanner = Rescanner(settings, publisher)
    rescanner.run_once()
    rescanner.start()
    try:
        write_item(corpus / "news", "event.md", title="Seen through inotify", publishedDateTime="2025-01-01T00:00:00Z",
                   webUrl="https://x.org/event", topics=["Azure"])
        poll(lambda: any(i.title == "Seen through inotify" for i in publisher.snapshot.all_items), 20,
             "an inotify-triggered rescan publishes the new file", interval=0.05)
    finally:
        rescanner.stop()


def test_one_changed_file_rerenders_only_its_topics(corpus):
    settings = Settings(content=str(corpus), base_url=BASE)
    app = create_app(settings)
    rescanner = app_state(app).rescanner
    before = app_state(app).publisher.snapshot
    write_item(corpus / "news", "one.md", title="Only Kubernetes", publishedDateTime="2025-01-01T00:00:00Z",
               webUrl="https://x.org/one", topics=["Kubernetes"])
    assert rescanner.run_once()
    after = app_state(app).publisher.snapshot
    reused = {key.slug for key, doc in after.memo.items() if type(key) is FeedKey and before.memo.get(key) is doc}
    assert reused == set(after.topics) - {"kubernetes"}


# ----------------------------------------------------------------------------- static export


def build(content: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SYNDICATOR, "build", "--content", str(content), "--out", str(out), "--base-url", BASE,
                           *extra], capture_output=True, text=True, timeout=600)


def test_export_and_server_give_byte_identical_documents_at_20k(tmp_path):
    content = generate(tmp_path / "c20k", items=20_000, topics=300, bad=0.01)
    out = tmp_path / "site"
    result = build(content, out)
    assert result.returncode == 0, result.stderr
    assert "rendering 301 topics" in result.stderr and "wrote" in result.stderr  # progress on the terminal
    app = create_app(Settings(content=str(content), base_url=BASE))
    client = app.test_client()
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".gz" and not p.name.startswith(".")]
    assert len(files) > 301 * 3
    # Every subscription feed, page and OPML is compared; archive pages for every tenth topic and for
    # all items (rendering all of them a second time would double the test's run time for little).
    sampled = set(sorted(app_state(app).publisher.snapshot.topics)[::10]) | {"all"}
    files = [p for p in files if "/archive/" not in p.as_posix() or p.parent.parent.name in sampled]
    checked = 0
    for path in files:
        rel = path.relative_to(out).as_posix()
        url = "/" + rel.removesuffix("index.html")
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.data == path.read_bytes(), url
        assert gzip.decompress(path.with_name(path.name + ".gz").read_bytes()) == path.read_bytes()
        checked += 1
    snapshot = app_state(app).publisher.snapshot
    assert (out / "feeds" / "all" / "archive").is_dir()
    assert checked >= (len(snapshot.topics) + 1) * 3 + len(snapshot.topics) + 1 + 3 * 300  # >= 300 archive pages


def test_rebuild_swaps_atomically_and_keeps_unchanged_files(corpus, tmp_path):
    out = tmp_path / "site"
    assert build(corpus, out).returncode == 0
    first = out.resolve()
    azure = out / "feeds" / "azure.rss"
    kube = out / "feeds" / "kubernetes.rss"
    azure_stat, kube_stat = azure.stat(), kube.stat()
    write_item(corpus / "news", "new.md", title="Brand new", publishedDateTime="2026-01-01T00:00:00Z",
               webUrl="https://x.org/new", topics=["Kubernetes"])
    assert build(corpus, out).returncode == 0
    second = out.resolve()
    assert out.is_symlink() and second != first and first.exists()  # previous tree kept for readers
    assert (azure.stat().st_ino, azure.stat().st_mtime_ns) == (azure_stat.st_ino, azure_stat.st_mtime_ns)
    assert kube.stat().st_ino != kube_stat.st_ino and b"Brand new" in kube.read_bytes()
    assert build(corpus, out).returncode == 0
    assert not first.exists()  # only the previous generation is kept


def test_export_needs_base_url_and_will_not_clobber_a_directory(corpus, tmp_path):
    result = subprocess.run([*SYNDICATOR, "build", "--content", str(corpus), "--out", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "build needs base_url: give --base-url, SYNDICATOR_BASE_URL" in result.stderr
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "precious.txt").write_text("keep me")
    result = build(corpus, tmp_path / "real")
    assert result.returncode == 2 and "is not an export" in result.stderr
    assert (tmp_path / "real" / "precious.txt").read_text() == "keep me"


def test_build_watch_keeps_the_export_current(corpus, tmp_path):
    out = tmp_path / "site"
    log = open(tmp_path / "watch.log", "w")
    proc = subprocess.Popen([*SYNDICATOR, "build", "--content", str(corpus), "--out", str(out), "--base-url", BASE,
                             "--watch", "--interval", "2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (out / "feeds" / "azure.atom").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        write_item(corpus / "news", "watched.md", title="Watched change", publishedDateTime="2026-01-01T00:00:00Z",
                   webUrl="https://x.org/watched", topics=["Azure"])
        while time.monotonic() < deadline:
            if b"Watched change" in (out / "feeds" / "azure.atom").read_bytes():
                break
            time.sleep(0.1)
        assert b"Watched change" in (out / "feeds" / "azure.atom").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_make_scanner_uses_every_core_and_the_cache_by_default(tmp_path):
    scanner = make_scanner(Settings(content=str(tmp_path)))
    assert scanner.workers == (os.cpu_count() or 1)
    assert scanner.cache is not None and scanner.cache.path == Settings(content=str(tmp_path)).cache_file



def test_workers_take_turns_after_the_scan_they_inherit_and_replacements_catch_up():
    """A worker forked right after the master's scan does not walk every file again while it starts
    serving; worker k of n rescans (k+1)/n of an interval after that scan. A replacement worker (a reload
    or a crash, however soon after that scan), or one that inherited no snapshot, rescans at once."""
    import datetime as dt

    scanned = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    just_after = scanned + dt.timedelta(seconds=0.3)
    assert [(first_rescan(scanned, just_after, slot, 2, 60) - scanned).total_seconds() for slot in (0, 1)] == [30, 60]
    assert first_rescan(scanned, just_after, 2, 2, 60) == just_after  # the third worker started: a replacement
    assert first_rescan(scanned, just_after, 0, 1, 60) == scanned + dt.timedelta(seconds=60)
    an_hour_later = scanned + dt.timedelta(hours=1)
    assert first_rescan(scanned, an_hour_later, 1, 2, 60) == an_hour_later  # its turn is long past
    assert first_rescan(None, just_after, 1, 2, 60) == just_after


def test_a_worker_starts_its_rescans_from_what_it_inherited(corpus):
    """Rescanner.start schedules its first rescan by first_rescan(): half an interval after a fresh
    scan for worker 0 of 2, and, without a snapshot to serve, at once (the job has run, or is due)."""
    import datetime as dt

    rescanner = Rescanner(Settings(content=str(corpus), interval=600, workers=2), Publisher())
    rescanner.run_once()
    rescanner.start(slot=0)
    try:
        due = rescanner._scheduler.get_job("rescan").next_run_time
    finally:
        rescanner.stop()
    assert (due - rescanner.last_scan).total_seconds() == pytest.approx(300, abs=1)

    empty = Rescanner(Settings(content=str(corpus / "missing"), interval=600, workers=2), Publisher())
    empty.run_once()  # fails: nothing to serve yet
    empty.start(slot=1)
    try:
        due = empty._scheduler.get_job("rescan").next_run_time
    finally:
        empty.stop()
    # Due now, or already run (the scheduler then moved it an interval on): never half an interval away.
    wait = (due - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert wait < 2 or wait == pytest.approx(600, abs=2)


def test_restamped_listing_takes_new_stamps_in_a_copy(corpus):
    """Edits in place give the listing new stamps (several in one directory), leave the listing they
    came from as it was (it may belong to a cache state waiting to be written), and a file the listing
    does not hold makes it unknown."""
    import copy

    from syndicator.listing import restamped, walk

    listing = walk(corpus)
    before = copy.deepcopy(listing)
    prefix, names, stamps = next(row for row in listing if row[0] == "news/")
    changes = [(prefix + names[0], 11, 12), (prefix + names[-1], 13, 14)]
    new = restamped(listing, changes)
    assert listing == before
    row = next(r for r in new if r[0] == "news/")
    assert row[2][:2] == [11, 12] and row[2][-2:] == [13, 14] and row[2][2:-2] == stamps[2:-2]
    assert [r for r in new if r[0] != "news/"] == [r for r in before if r[0] != "news/"]
    assert restamped(listing, [*changes, ("news/not-there.md", 1, 2)]) is None
    assert restamped(listing, [("elsewhere/a.md", 1, 2)]) is None


def test_a_stopping_worker_stops_its_rescans_before_writing_the_cache(corpus, tmp_path):
    """What runs when a worker exits (gunicorn's worker_exit, granian's worker) stops its scheduled
    rescans first: left running, the scheduler fired during interpreter shutdown and logged an error
    ("cannot schedule new futures after interpreter shutdown"), which the load test caught once."""
    from syndicator.wsgi import finish_cache_write, start_rescans

    app = create_app(Settings(content=str(corpus), interval=1, fs_events=0, cache_dir=str(tmp_path / "cache")))
    start_rescans(app)
    scheduler = app_state(app).rescanner._scheduler
    assert scheduler.running
    finish_cache_write(app)
    assert not scheduler.running
