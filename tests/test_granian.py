"""`syndicator serve --server granian`: the same service under granian, over real HTTP.

granian is a test dependency, so these run in CI; a missing granian fails them, it does not skip them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, bump_mtime, generate, http_get, parse, poll, serve, served_files, steadily

from syndicator.config import ConfigError, Settings, load_settings
from syndicator.scan import Scanner


def test_granian_serves_parsable_feeds_304s_and_live_changes_in_every_worker(corpus):
    with serve(corpus, "--server", "granian", "--workers", "2", "--interval", "1") as base:
        status, headers, body = http_get(base + "/feeds/azure.rss")
        assert status == 200 and headers["Server"] == "granian"
        assert headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        parsed = parse(body)
        assert not parsed.bozo and parsed.feed.link == base + "/topics/azure/" and parsed.entries
        assert http_get(base + "/feeds/azure.rss", {"If-None-Match": headers["ETag"]})[0] == 304
        assert json.loads(http_get(base + "/status")[2])["items"] == served_files(corpus)
        # A change on disk shows up without a restart, in every worker.
        (corpus / "news" / "zz-new.md").write_text(
            "---\ntitle: Live change\npublishedDateTime: 2026-01-01T00:00:00Z\n"
            "webUrl: https://x.org/live\ntopics: [Azure]\n---\n", encoding="utf-8")
        poll(lambda: steadily(lambda: b"Live change" in http_get(base + "/feeds/azure.atom")[2]), 30,
             "the new item from every worker")


def test_granian_and_gunicorn_serve_the_same_bytes(corpus):
    """The server is only transport: every feed, page and ETag is the same under both."""
    paths = ["/feeds/all.rss", "/feeds/azure.atom", "/feeds/all.json", "/topics.opml", "/topics/azure/", "/"]
    public = ["--base-url", "https://feeds.example.com", "--workers", "2"]
    with serve(corpus, *public) as gunicorn, serve(corpus, *public, "--server", "granian") as granian:
        for path in paths:
            ours, theirs = http_get(gunicorn + path), http_get(granian + path)
            assert ours[0] == theirs[0] == 200, path
            assert ours[2] == theirs[2], path
            assert ours[1].get("ETag") == theirs[1].get("ETag"), path
            assert ours[1]["Content-Type"] == theirs[1]["Content-Type"], path


def test_granian_starts_warm_and_its_workers_write_a_pending_cache_when_stopped(tmp_path):
    """As under gunicorn: the cold start's parse cache is written before the workers fork, a restart parses
    nothing, and a worker stopped soon after an edit writes the cache with that edit first."""
    corpus = generate(tmp_path / "c", items=300, topics=6)
    cache_dir = tmp_path / "cache"
    args = ("--server", "granian", "--cache-dir", str(cache_dir), "--workers", "2")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with serve(corpus, *args, log=first_log):
        pass
    first = first_log.read_text()
    assert re.search(r"rescan files=(\d+) changed=\1 parsed=\1 removed=0 .* published=yes", first), first
    assert -1 < first.find(" written: ") < first.find("Spawning worker"), first

    with serve(corpus, *args, log=second_log) as base:
        newest = sorted((corpus / "news").iterdir())[-1]
        newest.write_text(newest.read_text(encoding="utf-8").replace("title: ", "title: Edited ", 1),
                          encoding="utf-8")
        bump_mtime(newest)
        poll(lambda: b"Edited" in http_get(base + "/feeds/all.rss")[2], 30, "the edit served")
    second = second_log.read_text()
    assert re.search(r"rescan files=(\d+) changed=0 parsed=0 removed=0 .* published=yes", second), second
    # The edit's cache write was 30 s away when the server stopped: the workers wrote it on their way out.
    warm = Scanner(corpus, cache_file=Settings(content=str(corpus), cache_dir=str(cache_dir)).cache_file)
    scan = warm.scan()
    assert scan.stats.parsed == 0 and any(i.title.startswith("Edited ") for i in scan.items)


def test_the_server_setting_is_checked_and_a_missing_granian_is_named():
    assert load_settings(env={"SYNDICATOR_SERVER": "Granian"}).server == "granian"
    with pytest.raises(ConfigError, match="server must be gunicorn or granian, got 'uvicorn'"):
        load_settings(env={"SYNDICATOR_SERVER": "uvicorn"})
    # Without granian installed (hidden here), `serve --server granian` says what to install.
    code = ("import sys; sys.modules['granian'] = None; from syndicator.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "serve", "--content", str(ROOT / "content"), "--server",
                           "granian"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "server granian is not installed: pip install 'syndicator[granian]'" in proc.stderr


def _start(log: Path, *args: str) -> subprocess.Popen:
    """`serve *args` as a process of its own, output to `log`, for tests that signal its main process
    (conftest's serve() hides the process)."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "syndicator.cli", "serve", *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)


@pytest.mark.parametrize("server, replaced", [("granian", ("Stopped old worker", 2)),
                                              ("gunicorn", ("Booting worker", 4))])
def test_hup_replaces_the_workers_which_catch_up_and_term_stops_cleanly(corpus, tmp_path, server, replaced):
    """What deploy/syndicator.service does to the main process, under either server: HUP brings up fresh
    workers (forked with the main process's snapshot; as replacements they rescan at once, not at their
    turn), which serve the current content; TERM then stops everything with exit status 0."""
    from helpers import free_port, stop, wait_http

    port = free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    proc = _start(log, "--content", str(corpus), "--server", server, "--port", str(port), "--workers", "2",
                  "--interval", "600", "--fs-events", "0")
    try:
        wait_http(base + "/healthz", proc=proc, log=log)
        (corpus / "news" / "zz-new.md").write_text(
            "---\ntitle: Before the reload\npublishedDateTime: 2026-01-01T00:00:00Z\n"
            "webUrl: https://x.org/reload\ntopics: [Azure]\n---\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        line, count = replaced
        poll(lambda: log.read_text().count(line) >= count, 60, "both workers replaced")
        # No filesystem events and a 600 s interval: only the new workers' first rescans, at once, can
        # bring the item in, within seconds.
        poll(lambda: steadily(lambda: b"Before the reload" in http_get(base + "/feeds/azure.rss")[2]), 30,
             "the item written before the reload, from both new workers")
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()


def test_a_stop_while_the_workers_start_ends_every_process(tmp_path):
    """TERM right after granian forks its workers, while they start (load the app, start their rescans):
    the main process exits and no worker is left running. Before, a worker inherited the main's signal
    handlers and ignored the stop, and the main waited for it for ever."""
    from helpers import free_port, stop

    log = tmp_path / "serve.log"
    proc = _start(log, "--content", str(ROOT / "content"), "--server", "granian", "--port", str(free_port()),
                  "--workers", "2", "--cache-dir", "off")

    def workers() -> list[int]:
        return [int(pid) for pid in re.findall(r"Spawning worker-\d with PID: (\d+)", log.read_text())]

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    try:
        poll(lambda: len(workers()) == 2, 60, "granian forking its workers")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0, log.read_text()
        poll(lambda: not any(map(running, workers())), 10, "every worker gone")
    finally:
        stop(proc)
        for pid in workers():  # one left over would serve on: end it, if the pid is still one of ours
            with contextlib.suppress(OSError):
                if b"syndicator" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
