"""Under fire: every fault is injected for real, then we check that the last good feeds stayed online, that
nothing half-written was ever served, and that the service recovers by itself at the next rescan.

a. the content directory vanishes and comes back (real gunicorn, two workers, scheduled rescans);
b. files nobody can read (real gunicorn; as root, without the capabilities that let root read anything);
c. a file truncated mid-write and completed later;
d. exceptions inside a rescan: raised in the real scheduler thread (in the reader, and after the scan),
   and the one that real concurrency raises (rescans while request threads render documents);
e. a full disk during `syndicator build` (a small tmpfs of its own, or a loop-mounted ext4 image);
f. `syndicator build` killed with SIGKILL half-way.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ROOT,
    SYNDICATOR,
    bump_mtime,
    free_port,
    generate,
    http_get,
    parse,
    poll,
    serve,
    served_files,
    steadily,
    stop,
    wait_http,
    write_item,
)

from syndicator.config import Settings
from syndicator.scheduler import Rescanner
from syndicator.snapshot import Publisher
from syndicator.web import app_state, create_app

FORMATS = ("rss", "atom", "json")
BASE = "http://feeds.test"


# ----------------------------------------------------------------------------- helpers


def etag_of(body: bytes) -> str:
    """The app's strong ETag of a body (documents.make_document)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def check_document(body: bytes, fmt: str, etag: str | None = None) -> Any:
    """A served feed must be whole: it parses cleanly, and its ETag is the hash of exactly these bytes."""
    if etag is not None:
        assert etag == etag_of(body), f"ETag {etag} does not belong to the body served with it"
    if fmt == "json":
        doc = json.loads(body)
        assert doc["version"] == "https://jsonfeed.org/version/1.1" and isinstance(doc["items"], list)
        return doc
    return parse(body)


def entry_titles(body: bytes, fmt: str) -> dict[str, str]:
    """Entry id -> title of a served feed."""
    doc = check_document(body, fmt)
    if fmt == "json":
        return {item["id"]: item.get("title", "") for item in doc["items"]}
    return {entry.id: entry.title for entry in doc.entries}


def client_feeds(client) -> dict[tuple[str, str], bytes]:
    """Every subscription feed of the app, each checked whole; (slug, format) -> bytes."""
    slugs = ["all", *[t["slug"] for t in client.get("/status").get_json()["topics"]]]
    out = {}
    for slug in slugs:
        for fmt in FORMATS:
            response = client.get(f"/feeds/{slug}.{fmt}")
            assert response.status_code == 200, (slug, fmt, response.status_code)
            check_document(response.data, fmt, response.headers["ETag"])
            out[(slug, fmt)] = response.data
    return out


def retitled(text: str, title: str) -> str:
    new, count = re.subn(r"^title: .*$", f"title: {title}", text, count=1, flags=re.M)
    assert count == 1
    return new


def served_feeds(base: str) -> dict[tuple[str, str], bytes]:
    """Every subscription feed of a running server, each checked whole; (slug, format) -> bytes."""
    status, _head, body = http_get(base + "/status")
    assert status == 200
    slugs = ["all", *[t["slug"] for t in json.loads(body)["topics"]]]
    out = {}
    for slug in slugs:
        for fmt in FORMATS:
            code, head, data = http_get(f"{base}/feeds/{slug}.{fmt}")
            assert code == 200, (slug, fmt, code, data[:200])
            check_document(data, fmt, head["ETag"])
            out[(slug, fmt)] = data
    return out


def fetch_feed(base: str, path: str) -> bytes:
    """GET one feed of a running server; it must be a 200 and whole (parses, ETag of these bytes)."""
    code, head, body = http_get(base + path)
    assert code == 200, (path, code, body[:200])
    check_document(body, path.rsplit(".", 1)[1], head["ETag"])
    return body


def status_of(base: str) -> dict:
    code, _head, body = http_get(base + "/status")
    assert code == 200
    return json.loads(body)


def healthz(base: str) -> str:
    code, _head, body = http_get(base + "/healthz")
    assert code == 200
    return body.decode()


def newest_item(content: Path):
    """The newest item of a content tree (it is in every feed it belongs to, the all-items feed included)."""
    app = create_app(Settings(content=str(content)))
    return app_state(app).publisher.snapshot.all_items[0]


# ----------------------------------------------------------------------------- a. content directory gone


def test_a_content_directory_removed_and_restored(corpus, tmp_path):
    away = tmp_path / "content-moved-away"
    served = served_files(corpus)
    with serve(corpus, "--interval", "1", "--workers", "2") as base:
        before = served_feeds(base)
        assert healthz(base) == "ok\n"

        corpus.rename(away)  # the whole directory vanishes (an unmounted volume, a botched deploy)
        # ... and while it is away, someone adds a story to it: it must show up once it is back.
        write_item(away / "news", "2025-03-01-while-away.md", title="Story written while the directory was away",
                   publishedDateTime="2025-03-01T00:00:00Z", webUrl="https://news.example.org/while-away",
                   topics=["Azure"])

        poll(lambda: steadily(lambda: healthz(base).startswith("degraded:") and fetch_feed(base, "/feeds/all.atom")),
             30, "/healthz degraded on all workers, feeds still served")
        assert "does not exist" in healthz(base)
        status = status_of(base)
        assert status["healthy"] is False and "does not exist" in status["degraded"]
        assert status["items"] == served  # the last snapshot, whole
        # The last good feeds stay online, byte for byte (and each one parses and matches its ETag).
        assert served_feeds(base) == before

        away.rename(corpus)
        story = b"Story written while the directory was away"
        poll(lambda: steadily(lambda: healthz(base) == "ok\n" and story in fetch_feed(base, "/feeds/azure.rss")),
             30, "healthy again and current on all workers")
        after = served_feeds(base)
        assert status_of(base)["items"] == served + 1
        changed = {key for key in before if before[key] != after[key]}
        assert changed == {(slug, fmt) for slug in ("all", "azure") for fmt in FORMATS}


# ----------------------------------------------------------------------------- b. unreadable files

libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def drop_read_anything_capabilities() -> None:
    """preexec_fn: give up the two capabilities that let root read any file whatever its mode.

    Tests run as root in CI, and root ignores permission bits, so `chmod 000` alone stops no read. Dropped
    from the bounding set before exec, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH are gone from the new
    program's permitted and effective sets: it is still uid 0 and owns the test's files, but now the mode
    bits apply to it, so opening a mode-000 file fails with EACCES, exactly as it does for any other user.
    """
    if os.geteuid() != 0:
        return  # an ordinary user is already subject to the mode bits
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(errno)}")


@contextmanager
def serve_without_read_override(content: Path, *args: str):
    """Like conftest.serve, but the server runs without the power to read files whose mode forbids it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="syndicator-serve-") as scratch:
        log = Path(scratch) / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*SYNDICATOR, "serve", "--content", str(content), "--port", str(port), *args],
                                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                    preexec_fn=drop_read_anything_capabilities)
        try:
            wait_http(base + "/healthz", proc=proc, log=log)
            yield base
        finally:
            stop(proc)


def assert_unreadable_for_the_server(path: Path) -> None:
    """The injected fault must be real: a process with the server's credentials cannot read the file."""
    probe = subprocess.run([sys.executable, "-c", "import sys; open(sys.argv[1], 'rb').read()", str(path)],
                           preexec_fn=drop_read_anything_capabilities, capture_output=True, text=True)
    if probe.returncode == 0 or "PermissionError" not in probe.stderr:
        pytest.fail(f"could not make {path} unreadable for the server (probe exit {probe.returncode}: "
                    f"{probe.stderr.strip()[-300:]}); the unreadable-file fault was not injected")


def write_with_mode(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically by a new version created with `mode` (as a deploy tool with a strict
    umask, or an rsync from a machine where the file was private, would leave it)."""
    tmp = path.with_name(path.name + ".tmp")  # *.tmp files are ignored by the scanner
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)


def test_b_unreadable_files_keep_the_last_good_version_and_recover_once_readable(corpus, tmp_path):
    victim = newest_item(corpus)
    path = corpus / victim.path
    fresh = corpus / "news" / "2025-04-01-unreadable-newcomer.md"
    with serve_without_read_override(corpus, "--interval", "1", "--workers", "2") as base:
        old_title = entry_titles(fetch_feed(base, "/feeds/all.atom"), "atom")[victim.id]

        # A new version of a good item arrives unreadable, and so does a brand-new item.
        write_with_mode(path, retitled(path.read_text(encoding="utf-8"), "Rewritten while unreadable"), 0o000)
        staged = write_item(tmp_path / "staging", fresh.name, title="Unreadable newcomer",
                            publishedDateTime="2025-04-01T00:00:00Z",
                            webUrl="https://news.example.org/unreadable-newcomer", topics=["Azure"])
        staged.chmod(0o000)
        staged.rename(fresh)  # it arrives unreadable: the scanner never sees a readable moment
        assert_unreadable_for_the_server(path)
        assert_unreadable_for_the_server(fresh)

        def problems() -> dict[str, dict]:
            return {p["path"]: p for p in status_of(base)["problems"]}

        def both_reported() -> bool:
            found = problems()
            return (victim.path in found and found[victim.path]["stale"]
                    and fresh.relative_to(corpus).as_posix() in found)

        poll(lambda: steadily(both_reported), 30, "both unreadable files reported on all workers")
        found = problems()
        assert "Permission denied" in found[victim.path]["reason"], found
        assert "last good version is still served" in found[victim.path]["reason"]
        newcomer = found[fresh.relative_to(corpus).as_posix()]
        assert "Permission denied" in newcomer["reason"] and newcomer["stale"] is False
        assert healthz(base) == "ok\n"  # a bad file is not a degraded service
        feeds = served_feeds(base)  # every feed parses and matches its ETag
        assert entry_titles(feeds[("all", "atom")], "atom")[victim.id] == old_title
        assert not any(b"Rewritten while unreadable" in body or b"Unreadable newcomer" in body
                       for body in feeds.values())

        # Someone fixes the permissions (chmod changes neither size nor mtime, only ctime).
        path.chmod(0o644)
        fresh.chmod(0o644)

        def current() -> tuple[bool, Any]:
            body = fetch_feed(base, "/feeds/all.atom")
            titles = set(entry_titles(body, "atom").values())
            left = [p["path"] for p in status_of(base)["problems"]]
            return ("Rewritten while unreadable" in titles and "Unreadable newcomer" in titles and not left,
                    {"problems": left, "victim title": entry_titles(body, "atom").get(victim.id)})

        poll(lambda: steadily(current), 15,
             "after chmod 644 the files are read again at the next rescan (BUG: the scanner caches the read "
             "error under the unchanged (mtime, size) and never retries)")
        served_feeds(base)


# ----------------------------------------------------------------------------- c. truncated mid-write


def test_c_file_truncated_mid_write_keeps_last_good_version_until_completed(corpus, make_app):
    served = served_files(corpus)
    app = make_app(corpus)
    client = app.test_client()
    rescanner = app_state(app).rescanner
    snapshot = app_state(app).publisher.snapshot
    victim = snapshot.all_items[0]
    path = corpus / victim.path
    before = client_feeds(client)
    old_title = entry_titles(before[("all", "atom")], "atom")[victim.id]
    new_bytes = retitled(path.read_text(encoding="utf-8"), "Completed rewrite").encode("utf-8")
    newcomer = corpus / "news" / "2025-05-01-half-written-newcomer.md"
    newcomer_bytes = (b"---\ntitle: Half-written newcomer\npublishedDateTime: 2025-05-01T00:00:00Z\n"
                      b"webUrl: https://news.example.org/half-written-newcomer\ntopics: [Azure]\n---\nBody.\n")

    # Two writers are half-way: the files hold the first half of their new bytes, handles still open.
    with open(path, "wb") as rewrite, open(newcomer, "wb") as create:
        rewrite.write(new_bytes[: len(new_bytes) // 2])
        rewrite.flush()
        create.write(newcomer_bytes[: len(newcomer_bytes) // 2])
        create.flush()
        assert path.stat().st_size == len(new_bytes) // 2

        rescanner.run_once()
        status = client.get("/status").get_json()
        problems = {p["path"]: p for p in status["problems"]}
        assert problems[victim.path]["stale"] is True
        assert "not terminated" in problems[victim.path]["reason"]
        assert "last good version is still served" in problems[victim.path]["reason"]
        assert problems["news/2025-05-01-half-written-newcomer.md"]["stale"] is False
        assert status["healthy"] is True and status["items"] == served
        during = client_feeds(client)
        assert during == before  # the last good version, byte for byte; nothing of the halves
        assert entry_titles(during[("all", "atom")], "atom")[victim.id] == old_title

        # The writers finish.
        rewrite.write(new_bytes[len(new_bytes) // 2:])
        create.write(newcomer_bytes[len(newcomer_bytes) // 2:])

    assert rescanner.run_once() is True
    status = client.get("/status").get_json()
    assert status["problems"] == [] and status["items"] == served + 1
    after = client_feeds(client)
    titles = entry_titles(after[("all", "atom")], "atom")
    assert titles[victim.id] == "Completed rewrite"
    assert "Half-written newcomer" in titles.values()


# ----------------------------------------------------------------------------- d. exceptions in the rescan


@pytest.fixture
def scheduled(corpus):
    """An app over `corpus` whose rescans run in the real scheduler (APScheduler thread, every second,
    plus filesystem events), as in each gunicorn worker."""
    publisher = Publisher()
    settings = Settings(content=str(corpus), interval=1)
    rescanner = Rescanner(settings, publisher)
    rescanner.run_once()
    app = create_app(settings, publisher=publisher)
    rescanner.start()
    try:
        yield app.test_client(), publisher
    finally:
        rescanner.stop()


def test_d_reader_exception_in_the_scheduler_thread_is_a_problem_for_that_file_only(corpus, scheduled):
    served = served_files(corpus)
    client, publisher = scheduled
    victim = publisher.snapshot.all_items[0]
    path = corpus / victim.path
    before = client_feeds(client)
    old_title = entry_titles(before[("all", "atom")], "atom")[victim.id]
    cursed = {victim.path, "news/2025-06-01-cursed.md"}

    import syndicator.parsing

    real_read_item = syndicator.parsing.read_item
    calls = []

    def read_item(raw, rel, **kwargs):
        calls.append(rel)
        if rel in cursed:
            raise RuntimeError(f"reader blew up on {rel}")
        return real_read_item(raw, rel, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("syndicator.parsing.read_item", read_item)
        path.write_text(retitled(path.read_text(encoding="utf-8"), "Cursed rewrite"), encoding="utf-8")
        bump_mtime(path)
        write_item(corpus / "news", "2025-06-01-cursed.md", title="Cursed newcomer",
                   publishedDateTime="2025-06-01T00:00:00Z", webUrl="https://news.example.org/cursed",
                   topics=["Azure"])

        def reported() -> tuple[bool, Any]:
            problems = {p["path"]: p for p in client.get("/status").get_json()["problems"]}
            return cursed <= problems.keys(), problems

        problems = poll(reported, 30, "both files reported by the scheduled rescan")
        assert cursed <= set(calls)  # the fault really fired, inside the scheduler's rescan
        for rel in cursed:
            assert "internal error while reading: RuntimeError: reader blew up on" in problems[rel]["reason"]
        assert problems[victim.path]["stale"] is True
        assert problems["news/2025-06-01-cursed.md"]["stale"] is False
        assert client.get("/healthz").data == b"ok\n"  # one file's trouble is not the service's
        during = client_feeds(client)
        assert entry_titles(during[("all", "atom")], "atom")[victim.id] == old_title
        assert not any(b"Cursed" in body for body in during.values())
        assert client.get("/status").get_json()["items"] == served

        # The scheduler thread survived: a later, ordinary change still flows.
        write_item(corpus / "news", "2025-06-02-after.md", title="Story after the explosion",
                   publishedDateTime="2025-06-02T00:00:00Z", webUrl="https://news.example.org/after",
                   topics=["Security"])
        poll(lambda: b"Story after the explosion" in client.get("/feeds/security.rss").data, 30,
             "a later change published by the same scheduler")

    # The reader is fixed. An internal error is remembered like bad input (logged once, not retried every
    # second); the next edit of each file is read with the fixed reader.
    bump_mtime(path, 10)
    bump_mtime(corpus / "news" / "2025-06-01-cursed.md", 10)

    def recovered() -> tuple[bool, Any]:
        titles = set(entry_titles(client.get("/feeds/all.atom").data, "atom").values())
        problems = client.get("/status").get_json()["problems"]
        return {"Cursed rewrite", "Cursed newcomer"} <= titles and not problems, problems

    poll(recovered, 30, "recovered after the fix")
    client_feeds(client)


def test_d_exception_after_the_scan_degrades_then_the_next_rescan_publishes_the_change(corpus, scheduled):
    served = served_files(corpus)
    client, publisher = scheduled
    before = client_feeds(client)
    failing = {"on": True}

    import syndicator.scheduler

    real_build = syndicator.scheduler.build_snapshot

    def build_snapshot(*args, **kwargs):
        if failing["on"]:
            raise RuntimeError("snapshot builder on fire")
        return real_build(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("syndicator.scheduler.build_snapshot", build_snapshot)
        write_item(corpus / "news", "2025-07-01-pending.md", title="Pending while the builder burns",
                   publishedDateTime="2025-07-01T00:00:00Z", webUrl="https://news.example.org/pending",
                   topics=["Kubernetes"])
        def degraded() -> tuple[bool, Any]:
            health = publisher.health
            body = client.get("/healthz").data
            return not health.ok and body == b"degraded: RuntimeError: snapshot builder on fire\n", health

        first_failure = poll(degraded, 30, "/healthz degraded by the failing scheduled rescan").failed_at
        assert client_feeds(client) == before  # the last snapshot, whole, stays online

        # The next scheduled rescan, with the cause still there, must try again and fail again: the
        # change on disk is still not published. Wait for whichever the next rescan records: a new
        # failure (right) or a success (wrong: health would say ok while the feeds lack the change).
        def next_rescan() -> tuple[bool, Any]:
            health, last_ok = publisher.health, publisher.last_scan
            retried = health.failed_at is not None and health.failed_at > first_failure
            reported_ok = last_ok is not None and last_ok > first_failure
            return retried or reported_ok, {"retried": retried, "reported ok": reported_ok}

        outcome = poll(next_rescan, 30, "another scheduled rescan after the failure")
        assert outcome == {"retried": True, "reported ok": False}, (
            "BUG: after a failed rescan the next one finds 'no change' (the failed one already recorded the "
            "new file in the scanner), skips building, reports healthy and keeps serving the old snapshot: "
            f"{outcome}, /healthz says {client.get('/healthz').data!r}")
        status = client.get("/status").get_json()
        assert status["healthy"] is False and status["items"] == served
        assert client_feeds(client) == before

        failing["on"] = False  # the cause goes away; nothing else changes on disk

        def current() -> tuple[bool, Any]:
            health = client.get("/healthz").data
            body = client.get("/feeds/kubernetes.rss").data
            return health == b"ok\n" and b"Pending while the builder burns" in body, health

        poll(current, 15,
             "the pending change is published by the next rescan (BUG: Rescanner.run_once sees 'no change' "
             "because the failed rescan already recorded the new file in the scanner, reports ok, and keeps "
             "serving the old snapshot)")
    after = client_feeds(client)
    assert after[("kubernetes", "rss")] != before[("kubernetes", "rss")]


def test_d_rescans_while_requests_render_documents_never_fail(corpus, make_app):
    """The exception that bench/load.py found in a real server: gunicorn's request threads render documents
    into the published snapshot's memo while the rescan thread carries that memo over to the next snapshot.

    Readers render many distinct documents (`?limit=N` feeds) while the main thread edits a file and
    rescans, over and over. Python switches threads every 5 ms by default; a tiny switch interval makes the
    interleaving that happens now and then under real load happen within a second or two.
    """
    app = make_app(corpus)
    rescanner = app_state(app).rescanner
    publisher = app_state(app).publisher
    slugs = ["all", *publisher.snapshot.topics]
    victim = corpus / publisher.snapshot.all_items[0].path
    text = victim.read_text(encoding="utf-8")
    stop = threading.Event()
    reader_errors: list[str] = []

    def reader(seed: int) -> None:
        client = app.test_client()
        i = seed
        while not stop.is_set():
            url = f"/feeds/{slugs[i % len(slugs)]}.{FORMATS[i % 3]}?limit={1 + (i // 3) % 49}"
            response = client.get(url)
            if response.status_code != 200:
                reader_errors.append(f"{url}: {response.status_code}")
            i += 7

    switch = sys.getswitchinterval()
    readers = [threading.Thread(target=reader, args=(k,), daemon=True) for k in range(2)]
    failure = None
    rescans = 0
    sys.setswitchinterval(1e-6)
    try:
        for t in readers:
            t.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            rescans += 1
            victim.write_text(retitled(text, f"Edit number {rescans}"), encoding="utf-8")
            bump_mtime(victim, rescans)
            rescanner.run_once()
            if not publisher.health.ok:
                failure = publisher.health.message
                break
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
        sys.setswitchinterval(switch)
    assert failure is None, (
        f"rescan {rescans} failed while requests rendered documents: {failure} (BUG: documents.carry_over "
        "iterates the old snapshot's memo while request threads add to it)")
    assert not reader_errors, reader_errors[:5]
    client = app.test_client()
    assert f"Edit number {rescans}" in entry_titles(client.get("/feeds/all.atom").data, "atom").values()
    client_feeds(client)


# ----------------------------------------------------------------------------- e. disk full during build


def run_build(content: Path, out: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SYNDICATOR, "build", "--content", str(content), "--out", str(out), "--base-url", BASE],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def assert_complete_export(out: Path) -> dict[str, str]:
    """`out` is a symlink to a whole export: every file its manifest names is there with those exact bytes,
    nothing else is there, and the feeds parse. Returns the manifest."""
    assert out.is_symlink(), f"{out} is not the export symlink"
    tree = out.resolve()
    manifest = json.loads((tree / ".manifest.json").read_text())
    for rel, digest in manifest.items():
        assert hashlib.sha256((tree / rel).read_bytes()).hexdigest() == digest, f"{rel} is not what was built"
    # The export's bookkeeping: the manifest, and the signatures of the pages its feeds were made from.
    bookkeeping = {".manifest.json", ".pages.json"}
    present = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()} - bookkeeping
    assert present == set(manifest), f"files outside the manifest: {sorted(present ^ set(manifest))[:10]}"
    pages = json.loads((tree / ".pages.json").read_text())
    assert {rel for rel in pages if rel} <= {rel for rel in manifest if rel.startswith("feeds/")}
    for fmt in FORMATS:
        check_document((tree / "feeds" / f"all.{fmt}").read_bytes(), fmt)
        assert gzip.decompress((tree / "feeds" / f"all.{fmt}.gz").read_bytes()) == (
            tree / "feeds" / f"all.{fmt}").read_bytes()
    return manifest


def leftovers(out: Path) -> list[str]:
    """Generation directories and swap links beside `out`, by name (not the build's lock file, which stays)."""
    return sorted(p.name for p in out.parent.iterdir()
                  if p.name.startswith((f".{out.name}.gen-", f".{out.name}.link-")))


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (found in /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(int(entry))
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB filesystem of its own to fill (room for a 10-item export with its per-kind feeds): tmpfs,
    or an ext4 image on a loop device when tmpfs cannot be
    mounted. Either needs root (CAP_SYS_ADMIN); without it the test fails, it is not skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    tried = []
    result = _run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt))
    if result.returncode != 0:
        tried.append(f"mount -t tmpfs: {result.stderr.strip() or result.returncode}")
        image = tmp_path / "disk.img"
        with open(image, "wb") as f:
            f.truncate(10 * 1024 * 1024)
        result = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        if result.returncode == 0:
            result = _run("mount", "-o", "loop", str(image), str(mnt))
            if result.returncode != 0:
                tried.append(f"mount -o loop (ext4 image): {result.stderr.strip() or result.returncode}")
        else:
            tried.append(f"mkfs.ext4: {result.stderr.strip() or result.returncode}")
    if tried and result.returncode != 0:
        pytest.fail("the disk-full test needs a small filesystem of its own and could not mount one "
                    "(run the tests as root, or in a container with CAP_SYS_ADMIN): " + "; ".join(tried))
    try:
        yield mnt
    finally:
        if _run("umount", str(mnt)).returncode != 0:
            _run("umount", "-l", str(mnt))


def test_e_disk_full_during_build_keeps_the_previous_export(corpus, tmp_path, small_disk):
    out = small_disk / "site"
    aside = tmp_path / "held-back"
    aside.mkdir()
    items = sorted((corpus / "news").glob("*.md"))
    for path in items[10:]:  # the previous export: 10 items, it fits
        path.rename(aside / path.name)
    first = run_build(corpus, out)
    assert first.returncode == 0, first.stderr
    previous = out.resolve()
    before = assert_complete_export(out)
    assert len(parse((out / "feeds" / "all.rss").read_bytes()).entries) == 10

    # Other things fill the disk until only a little is left; the next export (60 items) cannot fit.
    st = os.statvfs(small_disk)
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 300 * 1024))
    for path in aside.iterdir():
        path.rename(corpus / "news" / path.name)

    second = run_build(corpus, out)
    assert second.returncode != 0, "the build did not run out of space; the test's disk is too big"
    assert "No space left on device" in second.stderr, second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith("syndicator: ") and "No space left on device" in last, last
    # The previous export is intact, and still what `out` points at.
    assert out.resolve() == previous
    assert assert_complete_export(out) == before
    # No partial generation (or swap link) left behind.
    assert leftovers(out) == [previous.name], leftovers(out)

    # Space comes back: the next build succeeds by itself.
    ballast.unlink()
    third = run_build(corpus, out)
    assert third.returncode == 0, third.stderr
    assert out.resolve() != previous
    assert_complete_export(out)
    assert len(parse((out / "feeds" / "all.rss").read_bytes()).entries) == 50
    assert leftovers(out) == sorted([previous.name, out.resolve().name])


# ----------------------------------------------------------------------------- f. build killed half-way


def test_f_build_killed_mid_way_leaves_the_previous_export_and_the_next_build_cleans_up(tmp_path):
    content = generate(tmp_path / "content", items=400, topics=20)
    out = tmp_path / "site"
    first = run_build(content, out)
    assert first.returncode == 0, first.stderr
    previous = out.resolve()
    before = assert_complete_export(out)

    write_item(content / "news", "2025-08-01-new.md", title="Story of the killed build",
               publishedDateTime="2025-08-01T00:00:00Z", webUrl="https://news.example.org/killed", topics=["Azure"])
    with open(tmp_path / "build.log", "wb") as log:
        proc = subprocess.Popen([*SYNDICATOR, "build", "--content", str(content), "--out", str(out),
                                 "--base-url", BASE], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    partial = out.parent / f".{out.name}.gen-000002"
    try:
        # Kill it once it has written some feeds into its new generation (but not finished it).
        poll(lambda: next(partial.glob("feeds/*.rss"), None) is not None or proc.poll() is not None, 120,
             "the build writes its first feeds", interval=0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, ("the build finished before it could be killed: "
                                               + (tmp_path / "build.log").read_text()[-1000:])
    assert partial.is_dir() and not (partial / ".manifest.json").exists()  # really half-way

    # Nothing of the killed build lives on: its forked renderers must not keep running (or writing into
    # the export) without their parent. Any that do are recorded, then stopped by pid.
    def survivors() -> tuple[bool, list[int]]:
        pids = processes_mentioning(str(content))
        return not pids, pids

    try:
        poll(survivors, 10, "the killed build's processes are gone")
        orphans: list[int] = []
    except AssertionError:
        orphans = processes_mentioning(str(content))
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)

    # `out` still points at the previous, complete export.
    assert out.resolve() == previous
    assert assert_complete_export(out) == before

    # The next build succeeds and removes the killed build's partial generation.
    again = run_build(content, out)
    assert again.returncode == 0, again.stderr
    assert_complete_export(out)
    assert b"Story of the killed build" in (out / "feeds" / "azure.rss").read_bytes()
    assert not partial.exists(), "the killed build's partial generation was left behind"
    assert leftovers(out) == sorted([previous.name, out.resolve().name])
    assert not orphans, f"processes of the killed build were still running 10 s after it died: {orphans}"
