"""Benchmark syndicator against reference tools on the same generated corpus, on this machine.

    .venv/bin/python bench/run.py                    # 100,000 items / 1,000 topics (+ a 10,000-item corpus)
    .venv/bin/python bench/run.py --quick            # small sizes: checks the harness itself in ~a minute
    .venv/bin/python bench/run.py --write            # also write the table to bench/RESULTS.md

It generates the corpora into bench/work/ when missing, installs Hugo, wrk, nginx and GNU time with
apt-get when missing, then runs the PHASES below in order, each recording results under keys:

  reference  Hugo building only the topic RSS feeds (wall time, peak RSS; both corpora), PyYAML's
             CSafeLoader alone on front matter (µs/item), a bare os.scandir + stat walk (s)
  ours       `syndicator build`, `syndicator serve` cold start, a feed under wrk, 304s, a no-change
             rescan, one change, warm restart; the same feed and 304s under `serve --server granian`
  reference  a bare WSGI app under gunicorn and under granian with our worker settings, and nginx serving
             the same bytes as a static file, all under the same wrk load (only ever 127.0.0.1)

and prints one markdown table, a row per entry of ROWS: one of our results, the reference result it is
compared with, and the ratio ours ÷ reference. The page cache is warmed first, so every number is a
warm-cache number. "Cold" means no parse cache: every cold run gets a fresh, empty --cache-dir in
bench/work (the default, ~/.cache/syndicator, would survive between runs and make the next one warm).
To add a measurement: a function of the Context that calls ctx.record, a Phase naming its keys, a Row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BENCH,
    ROOT,
    VENV,
    WORK,
    Sampler,
    Wrk,
    cpu_seconds,
    ensure_corpus,
    ensure_tools,
    free_port,
    http_get,
    loadavg,
    machine,
    memory_kib,
    process_tree,
    python_cmd,
    server,
    table,
    timed_run,
    wait_http,
    wait_idle,
    wait_quiet,
    walk,
)

RESTARTS = 3  # warm restarts measured; the median is reported
RESCAN_ROUNDS = 5  # no-change rescans (and bare walks) in bench/rescan.py
FEED_LIMIT = 50  # syndicator's default feed_limit; Hugo's feeds get the same number of items
# gunicorn lines that mean workers will never become healthy: fail fast instead of waiting out the deadline.
FATAL = ("WORKER TIMEOUT", "Worker failed to boot", "Reason: App failed to load")
# The issue's figures for Hugo on this machine, shown next to ours to spot a broken setup.
ISSUE_HUGO = {(100_000, 1_000): "issue 15: 61.1 s, 3.8 GB", (10_000, 200): "issue 15: 5.3 s, 433 MB"}


@dataclass(frozen=True)
class Corpus:
    """A generated content directory (gen_corpus.py layout: news/*.md and topics/*.yaml)."""

    key: str  # "main" or "small"; result keys embed it
    items: int
    topics: int

    @property
    def path(self) -> Path:
        return WORK / f"corpus-{self.items}-{self.topics}"

    @property
    def label(self) -> str:
        return f"{self.items:,}/{self.topics:,}"


@dataclass
class Result:
    """One measured number."""

    value: float
    unit: str
    note: str = ""


@dataclass
class Context:
    """The run's settings, and the results its phases record."""

    quick: bool
    main: Corpus
    small: Corpus
    wrk: Wrk
    timeout: float  # upper bound for any one heavy child process (a build)
    serve_timeout: float  # upper bound for `syndicator serve` to become healthy
    serve_interval: int  # rescan interval given to `syndicator serve`
    yaml_items: int
    results: dict[str, Result] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # The feed ours served under wrk (its path, and the port its self links name): every other server
    # serves the same bytes.
    feed: bytes | None = None
    feed_path: str = ""
    feed_port: int = 0

    @property
    def logs(self) -> Path:
        path = WORK / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, key: str, value: float, unit: str, note: str = "") -> None:
        """Store a result and echo it, so a long run shows progress."""
        self.results[key] = Result(value, unit, note)
        print(f"    {key} = {value:,.3f} {unit}" + (f"  ({note})" if note else ""), flush=True)

    def skip(self, keys: Sequence[str], reason: str) -> None:
        """Mark results as not available, with the reason the table will show."""
        for key in keys:
            self.skipped.setdefault(key, reason)
        print(f"    n/a {', '.join(keys)}: {reason}", flush=True)


@dataclass(frozen=True)
class Phase:
    """One step of the run: `fn(ctx)` records the results named in `keys`."""

    name: str
    fn: Callable[[Context], None]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One line of the table: our result against a reference result."""

    what: str  # may use {main} / {small}: replaced with the corpus sizes
    ours: str
    reference: str
    reference_what: str
    better: str  # "lower" or "higher": which direction of ours ÷ reference is good


def _fresh(path: Path) -> Path:
    """An empty directory at `path` (whatever was there is gone)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@dataclass
class Started:
    """A server that answers and has gone idle, and how long that took."""

    proc: subprocess.Popen[bytes]
    healthy: float  # seconds from the start until `url` answered
    idle: float  # ... until its process tree had gone idle
    peak_pss: float  # MB, largest PSS sum of its process tree until then (with pss=True)


@contextmanager
def started(cmd: Sequence[str], log: Path, url: str, deadline: float, env: dict[str, str] | None = None,
            pss: bool = False) -> Iterator[Started]:
    """Run a server for the block, entered once `url` answers and the process tree is idle: a server
    answers once its first worker is up, and loading it then measured one worker (1,503 against 2,904
    req/s three seconds later under gunicorn). Every server gets the same wait."""
    with server(cmd, log, cwd=ROOT, env=env) as proc:
        sampler = Sampler(lambda: sum(memory_kib(process_tree(proc.pid), "Pss").values()), 0.5)
        if pss:
            sampler.start()
        try:
            healthy = wait_http(url, proc, log, deadline, fatal=FATAL)
            idle = healthy + wait_idle(proc.pid, deadline)
        finally:
            sampler.stop()
        yield Started(proc, healthy, idle, max([*sampler.samples, sampler.sample()]) / 1024 if pss else 0.0)


def get_feed(url: str) -> tuple[str, bytes]:
    """ETag and body of a feed that answers 200 and a 304 to that ETag."""
    status, headers, body = http_get(url)
    if status != 200 or not body:
        raise RuntimeError(f"{url}: {status}, {len(body)} bytes")
    etag = headers.get("ETag", "")
    if http_get(url, {"If-None-Match": etag})[0] != 304:
        raise RuntimeError(f"{url} with If-None-Match {etag} is not a 304")
    return etag, body


def feed_and_304(ctx: Context, key: str, url: str, etag: str, note: str) -> None:
    """wrk on a feed, then on 304s to its ETag: results `key`.rps and `key`.rps304."""
    full = ctx.wrk.best(url, ctx.logs / f"wrk-{key}.txt")
    ctx.record(f"{key}.rps", full.rps, "req/s", f"{note}; {full.note()}")
    cond = ctx.wrk.best(url, ctx.logs / f"wrk-{key}-304.txt", headers=[f"If-None-Match: {etag}"])
    ctx.record(f"{key}.rps304", cond.rps, "req/s", cond.note())


# ----------------------------------------------------------------------- references: builds and floors

HUGO_CONFIG = """\
# Generated by bench/run.py: Hugo builds ONLY the RSS feed of every topic (taxonomy term).
baseURL: http://127.0.0.1/
title: hugo-reference
# Hugo 0.73+ logs an ERROR (and fails the build) for "taxonomy" in disableKinds unless told it is meant.
ignoreErrors: [error-disable-taxonomy]
# "page" must stay enabled: disabling it removes the items from the taxonomy, and every feed with them.
disableKinds: [home, section, taxonomy, sitemap, robotsTXT, "404"]
taxonomies:
  topic: topics
outputs:
  term: [RSS]
params:
  feedLimit: {feed_limit}
frontmatter:
  date: [publishedDateTime, date]
  # Hugo's default publishDate list includes "published", which our items use as a boolean flag.
  publishDate: [publishDate]
  lastmod: [updatedDateTime, lastmod, date]
# Items are parsed and listed in their topics but never rendered. Without _target the cascade also hits
# the term pages, and Hugo silently writes no feed at all.
cascade:
  - _target: {{kind: page}}
    _build: {{render: never, list: always}}
# Mount the corpus instead of copying 100k files; layouts/ holds the minimal RSS template.
module:
  mounts:
    - {{source: "{news}", target: content/news}}
    - {{source: "{layouts}", target: layouts}}
"""


def hugo_build(ctx: Context) -> None:
    """Hugo building the topic RSS feeds of the main and the small corpus: wall time and peak RSS."""
    for corpus in (ctx.main, ctx.small):
        site = WORK / f"hugo-{corpus.items}-{corpus.topics}"
        out = site / "public"
        site.mkdir(parents=True, exist_ok=True)
        (site / "hugo.yaml").write_text(HUGO_CONFIG.format(
            feed_limit=FEED_LIMIT, news=corpus.path / "news", layouts=BENCH / "hugo" / "layouts"))
        shutil.rmtree(out, ignore_errors=True)  # every run writes every feed, as a cold build would
        timed = timed_run(["hugo", "--source", str(site), "--destination", str(out), "--cacheDir",
                           str(WORK / "hugo-cache"), "--quiet"], ctx.logs / f"hugo-{corpus.key}.log", ctx.timeout)
        feeds = entries = 0
        for path in (out / "topics").glob("*/index.xml"):  # a feed that does not parse raises
            entries += len(ET.parse(path).getroot().findall("./channel/item"))
            feeds += 1
        print(f"    Hugo wrote {feeds} topic feeds ({entries:,} items) for {corpus.topics} topics "
              f"in {timed['wall']:.1f} s, peak RSS {timed['rss_mb']:,.0f} MB, CPU {timed['cpu']:.1f} s", flush=True)
        if feeds < corpus.topics * 0.9:  # every topic gets items in these corpora; a few missing is a bug
            raise RuntimeError(f"Hugo wrote only {feeds} feeds for {corpus.topics} topics; see {out}")
        note = f"{feeds} feeds, CPU {timed['cpu']:.0f} s"
        if (corpus.items, corpus.topics) in ISSUE_HUGO:
            note += "; " + ISSUE_HUGO[(corpus.items, corpus.topics)]
        ctx.record(f"hugo.{corpus.key}.wall", timed["wall"], "s", note)
        ctx.record(f"hugo.{corpus.key}.rss", timed["rss_mb"], "MB")


def yaml_parse(ctx: Context) -> None:
    """PyYAML's CSafeLoader alone on the front matter of up to `yaml_items` files: the floor for a parse."""
    import yaml  # the harness is stdlib-only; this phase runs wherever PyYAML is

    names = sorted(os.listdir(ctx.main.path / "news"))
    step = max(1, len(names) // ctx.yaml_items)
    texts = []
    for name in names[::step][: ctx.yaml_items]:  # evenly spread over the corpus; read first: no I/O timed
        text = (ctx.main.path / "news" / name).read_text(encoding="utf-8")
        end = text.find("\n---", 4)
        texts.append(text[4:end] if text.startswith("---\n") and end > 0 else "")
    started_at = time.perf_counter()
    for text in texts:
        yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - the safe loader
    per_item = (time.perf_counter() - started_at) / len(texts)
    ctx.record("yaml.per_item", per_item * 1e6, "µs/item",
               f"{len(texts):,} files, one core, parse only; x{ctx.main.items:,} = {per_item * ctx.main.items:.0f} s")


def bare_walk(ctx: Context) -> None:
    """A bare os.scandir + stat walk of the main corpus (best of several, page cache warm)."""
    times, files = [], 0
    for _ in range(5):
        started_at = time.perf_counter()
        files = walk(str(ctx.main.path))
        times.append(time.perf_counter() - started_at)
    ctx.record("walk.main", min(times), "s", f"{files:,} files, best of {len(times)}")


# ------------------------------------------------------------------------------------------------ ours

def syndicator_build(ctx: Context) -> None:
    """`syndicator build` writing every feed of the small and the main corpus, from nothing; then one
    changed file: a one-shot build over that export (parse cache warm), and `build --watch` until the
    swapped export carries the change."""
    for corpus in (ctx.small, ctx.main):  # small first: its number survives a main build that times out
        # --out is a symlink swapped to each build: a fresh parent directory removes every earlier build.
        parent = _fresh(WORK / f"build-{corpus.items}-{corpus.topics}")
        cmd = python_cmd("-m", "syndicator.cli", "build", "--content", str(corpus.path), "--out", str(parent / "site"),
                         "--base-url", "http://127.0.0.1/", "--cache-dir", str(_fresh(parent / "cache")))
        try:
            timed = timed_run(cmd, ctx.logs / f"build-{corpus.key}.log", ctx.timeout, cwd=ROOT)
        except RuntimeError as exc:
            ctx.skip([f"build.{corpus.key}.wall", f"build.{corpus.key}.rss"],
                     f"failed: {str(exc).splitlines()[0][:200]}")
            continue
        files = [p for p in (parent / "site").resolve().rglob("*") if p.is_file()]
        feeds = sum(1 for p in files if p.suffix == ".rss")
        ctx.record(f"build.{corpus.key}.wall", timed["wall"], "s",
                   f"{len(files):,} files ({feeds:,} .rss of all kinds), CPU {timed['cpu']:.0f} s")
        ctx.record(f"build.{corpus.key}.rss", timed["rss_mb"], "MB",
                   "largest single process of the build (GNU time), not the tree's sum")
        with _edited_newest(corpus.path) as edit:
            tag = edit()
            again = timed_run(cmd, ctx.logs / f"rebuild-{corpus.key}.log", ctx.timeout, cwd=ROOT)
            if tag not in (parent / "site" / "feeds" / "all.rss").read_bytes():
                raise RuntimeError(f"the rebuild of {corpus.key} does not carry the edit")
            ctx.record(f"rebuild.{corpus.key}.oneshot", again["wall"], "s",
                       f"`build` again after one edited file, parse cache warm, CPU {again['cpu']:.1f} s; "
                       + _rebuild_note(ctx.logs / f"rebuild-{corpus.key}.log"))
            ctx.record(f"rebuild.{corpus.key}.watch", _watch_latency(ctx, cmd, parent / "site", edit, corpus.key),
                       "s", "`build --watch`: write of one file until /feeds/all.rss of the swapped export carries "
                       "it (filesystem events on); " + _rebuild_note(ctx.logs / f"watch-{corpus.key}.log"))
    ctx.record("target.rebuild_oneshot", 5.0, "s", "issue 15's target, not a measurement")
    ctx.record("target.rebuild_watch", 2.0, "s", "issue 15's target, not a measurement")


@contextmanager
def _edited_newest(content: Path) -> Iterator[Callable[[], bytes]]:
    """Edits of the newest item's title (a fresh tag each call, returned), undone afterwards, mtime included."""
    newest = sorted((content / "news").iterdir())[-1]
    original, stamp = newest.read_bytes(), newest.stat()

    def edit() -> bytes:
        tag = f"Edited{time.time_ns()} ".encode()
        newest.write_bytes(original.replace(b"title: ", b"title: " + tag, 1))
        return tag

    try:
        yield edit
    finally:
        newest.write_bytes(original)
        os.utime(newest, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def _rebuild_note(log: Path) -> str:
    """What a rebuild said it did: 'wrote N files, kept M unchanged (K feeds not even rendered)'."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("wrote ")]
    return lines[-1].split(", into ")[0] + " in the last export" if lines else "no export line in its log"


def _watch_latency(ctx: Context, cmd: list[str], out: Path, edit: Callable[[], bytes], key: str) -> float:
    """Seconds from one edited file until `build --watch` has swapped in an export carrying it."""
    log = ctx.logs / f"watch-{key}.log"
    with server([*cmd, "--watch", "--interval", "60"], log, cwd=ROOT):
        deadline = time.monotonic() + ctx.timeout
        while b"watching " not in log.read_bytes():  # its first export (over the one above) is done
            if time.monotonic() > deadline:
                raise RuntimeError(f"build --watch did not start watching; see {log}")
            time.sleep(0.2)
        time.sleep(1.0)  # let the filesystem watcher settle after the start
        started_at = time.monotonic()
        tag = edit()
        while tag not in (out / "feeds" / "all.rss").read_bytes():
            if time.monotonic() - started_at > 120:
                raise RuntimeError(f"build --watch did not export the edit within 120 s; see {log}")
            time.sleep(0.02)
        return time.monotonic() - started_at


def _serve_cmd(ctx: Context, port: int, *extra: str, base_url: bool = False) -> list[str]:
    # With base_url as production runs it: every subscription feed is rendered before the first request.
    return python_cmd("-m", "syndicator.cli", "serve", *extra, "--content", str(ctx.main.path), "--host",
                      "127.0.0.1", "--port", str(port), "--workers", "2", "--interval", str(ctx.serve_interval),
                      "--cache-dir", str(WORK / "serve-cache"),
                      *(["--base-url", f"http://127.0.0.1:{port}"] if base_url else []))


def syndicator_serve(ctx: Context) -> None:
    """`syndicator serve` on the main corpus: cold start, memory, feed throughput, 304s, rescans, one
    change, and warm restarts on the parse cache the cold start left."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    _fresh(WORK / "serve-cache")  # cold: nothing cached; the warm restarts below reuse it
    cmd, log = _serve_cmd(ctx, port, base_url=True), ctx.logs / "serve.log"
    with started(cmd, log, f"{base}/healthz", ctx.serve_timeout, pss=True) as cold:
        tree = process_tree(cold.proc.pid)
        rss, peak = memory_kib(tree, "VmRSS"), memory_kib(tree, "VmHWM")
        ctx.record("serve.main.cold", cold.healthy, "s", f"all workers done after ~{cold.idle:.0f} s, CPU "
                   f"{cpu_seconds(tree, reaped=True):.0f} s")
        ctx.record("serve.main.rss", sum(peak.values()) / 1024, "MB",
                   f"sum of peak RSS of {len(tree)} processes (gunicorn master + workers; shared pages "
                   f"counted in each); now {sum(rss.values()) / 1024:,.0f} MB RSS, "
                   f"{sum(memory_kib(tree, 'Pss').values()) / 1024:,.0f} MB PSS")
        ctx.record("serve.main.pss", cold.peak_pss, "MB", "largest PSS sum of the process tree (master, workers, "
                   "parse processes), sampled every 0.5 s from start until idle")
        ctx.record("serve.main.per_item", cold.healthy / ctx.main.items * 1e6, "µs/item", "time to healthy / items")

        status = json.loads(http_get(f"{base}/status")[2])
        top = max(status["topics"], key=lambda t: t["items"])  # the fullest feed: feed_limit entries
        ctx.feed_path, ctx.feed_port = f"/feeds/{top['slug']}.rss", port
        etag, ctx.feed = get_feed(base + ctx.feed_path)
        feed_and_304(ctx, "serve.main", base + ctx.feed_path, etag, f"{ctx.feed_path}, {len(ctx.feed) / 1000:.0f} KB")

        # A rescan that overlapped the wrk runs above would measure the load, not the rescan.
        loaded_until = dt.datetime.now(dt.timezone.utc)
        ctx.record("rescan.served", _served_rescan(ctx, base, loaded_until), "s",
                   "scan_seconds from /status: the first scheduled rescan to start after the wrk runs")
        ctx.record("change.main", _change_latency(base, ctx.main.path), "s",
                   "write of the newest item's file until 10 answers in a row of /feeds/all.rss carry the edit "
                   "(both workers), filesystem events on")
        ctx.record("target.change", 1.0, "s", "issue 5's target, not a measurement")
        ctx.record("target.restart", 3.0, "s", "issue 5's target, not a measurement")

    # Same command, same cache directory, the server above stopped: what a deploy or a crash costs. Three
    # restarts, the median counts: one start is seconds long and the machine's speed drifts by a third.
    with started(cmd, log.with_name("serve-restart-base-url.log"), f"{base}/healthz", ctx.serve_timeout) as warm:
        ctx.record("restart.main.base_url", warm.healthy, "s", "serve --base-url on the cache of the cold start: "
                   "every subscription feed rendered again before the first request")
    cmd = _serve_cmd(ctx, port)  # the restarts compared across runs: feeds rendered on first request
    restarts, notes = [], []
    for run in range(RESTARTS):
        with started(cmd, log.with_name(f"serve-restart-{run + 1}.log"), f"{base}/healthz",
                     ctx.serve_timeout) as warm:
            restarts.append(warm.healthy)
            notes.append(f"{warm.healthy:.2f} s (all workers done after ~{warm.idle:.0f} s, CPU "
                         f"{cpu_seconds(process_tree(warm.proc.pid), reaped=True):.0f} s)")
    ctx.record("restart.main.wall", statistics.median(restarts), "s",
               f"serve on the cache of the cold start; median of {RESTARTS} restarts: " + ", ".join(notes))

    # The same rescan in one process with the bare walk it is compared with, alternating, so both get
    # the same statistic under the same conditions (the served figure above is one sample in a worker).
    probe = subprocess.run(python_cmd(str(BENCH / "rescan.py"), str(ctx.main.path), str(WORK / "serve-cache"),
                                      str(RESCAN_ROUNDS)), capture_output=True, text=True, timeout=600, cwd=ROOT)
    if probe.returncode != 0:
        raise RuntimeError(f"bench/rescan.py failed: {probe.stderr.strip()[-500:]}")
    times = json.loads(probe.stdout.strip().splitlines()[-1])
    walks, rescans = times["walk"], times["rescan"]
    ctx.record("rescan.main", min(rescans), "s",
               f"Rescanner.run_once in one process, best of {len(rescans)}, alternating with the walk; "
               f"median {statistics.median(rescans):.2f} s")
    ctx.record("walk.interleaved", min(walks), "s",
               f"best of {len(walks)}, alternating with the rescans; median {statistics.median(walks):.2f} s")


def _change_latency(base: str, content: Path) -> float:
    """Seconds from editing the newest item's title (its file is the last by name: gen_corpus names files
    by date) until the whole-site feed carries the edit in 10 answers in a row, so every worker has it."""
    newest = sorted((content / "news").iterdir())[-1]
    original, stamp = newest.read_bytes(), newest.stat()
    tag = f"Edited{int(time.time())} ".encode()
    try:
        started_at = time.monotonic()
        newest.write_bytes(original.replace(b"title: ", b"title: " + tag, 1))
        in_a_row = 0
        while in_a_row < 10:
            if time.monotonic() - started_at > 120:
                raise RuntimeError(f"the edit of {newest.name} did not reach /feeds/all.rss within 120 s")
            in_a_row = in_a_row + 1 if tag in http_get(f"{base}/feeds/all.rss")[2] else 0
        return time.monotonic() - started_at
    finally:
        # Back as it was, mtime included: the warm restart measured next must find the content unchanged.
        newest.write_bytes(original)
        os.utime(newest, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        # ...and the workers must have taken the restore in: a worker writes its parse cache when stopped,
        # which would otherwise describe the edited file.
        in_a_row, restored = 0, time.monotonic()
        while in_a_row < 10 and time.monotonic() - restored < 120:
            in_a_row = 0 if tag in http_get(f"{base}/feeds/all.rss")[2] else in_a_row + 1


def _served_rescan(ctx: Context, base: str, after: dt.datetime) -> float:
    """Wait for a scheduled rescan that started after `after` (nothing changed since) and return the
    `scan_seconds` /status reports for it. Each worker rescans on its own; the first one seen counts.
    /status gives when a scan ended (`last_scan`); it started `scan_seconds` before that."""
    deadline = time.monotonic() + ctx.serve_interval + 120
    while time.monotonic() < deadline:
        status = json.loads(http_get(f"{base}/status")[2])
        last, seconds = status.get("last_scan"), status.get("scan_seconds")
        if last and seconds is not None and \
                dt.datetime.fromisoformat(last) - dt.timedelta(seconds=float(seconds)) > after:
            return float(seconds)
        time.sleep(1.0)
    raise RuntimeError(f"no rescan within {ctx.serve_interval + 120} s (interval {ctx.serve_interval} s)")


def granian_serve(ctx: Context) -> None:
    """`syndicator serve --server granian` on the main corpus: the same feed and 304 under wrk. It starts
    on the parse cache the gunicorn phase left (a warm start), so only serving is compared."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started(_serve_cmd(ctx, port, "--server", "granian"), ctx.logs / "serve-granian.log", f"{base}/healthz",
                 ctx.serve_timeout) as warm:
        url = base + (ctx.feed_path or "/feeds/all.rss")
        etag, body = get_feed(url)
        # The same bytes as under gunicorn, up to the address in the self links (each server had its own
        # port); only the address is taken out, not every run of the port's digits in the feed.
        if ctx.feed is not None and body.replace(f"127.0.0.1:{port}".encode(), b"") != \
                ctx.feed.replace(f"127.0.0.1:{ctx.feed_port}".encode(), b""):
            raise RuntimeError(f"{url} under granian differs from the same feed under gunicorn")
        feed_and_304(ctx, "serve.granian", url, etag, f"{url.removeprefix(base)}, {len(body) / 1000:.0f} KB, "
                     f"healthy after {warm.healthy:.1f} s (warm)")


# ------------------------------------------------------------------------ references: HTTP servers

def _feed_file(ctx: Context) -> tuple[Path, str]:
    """Our feed's bytes in a file, for the other servers to serve, and how the table describes them."""
    if ctx.feed is None:
        raise RuntimeError("no feed to serve: the syndicator serve phase did not get one")
    path = WORK / "http" / "feed.rss"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ctx.feed)
    return path, f"{len(ctx.feed) / 1000:.0f} KB: our {ctx.feed_path}"


def _bare_wsgi(ctx: Context, key: str, cmd: Callable[[int], list[str]]) -> None:
    """Our feed's bytes from bench/bare_wsgi.py, served by `cmd(port)`: results `key`.rps / .rps304."""
    body, what = _feed_file(ctx)
    port = free_port()
    url = f"http://127.0.0.1:{port}/feeds/feed.rss"
    with started(cmd(port), ctx.logs / f"{key}.log", url, 60, env=dict(os.environ, BENCH_BODY=str(body))):
        feed_and_304(ctx, key, url, get_feed(url)[0], what)


def wsgi_gunicorn(ctx: Context) -> None:
    """A bare WSGI callable under gunicorn with our worker settings (2 workers, gthread, 4 threads)."""
    _bare_wsgi(ctx, "wsgi", lambda port: [
        str(VENV / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
        "--threads", "4", "--access-logfile", "-", "--log-level", "info", "--no-control-socket",
        "--chdir", str(BENCH), "bare_wsgi:app"])


def wsgi_granian(ctx: Context) -> None:
    """The same bare WSGI callable under granian with the settings `serve --server granian` uses (2
    workers, 4 blocking threads each, access log on)."""
    _bare_wsgi(ctx, "wsgi_granian", lambda port: [
        str(VENV / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2", "--blocking-threads", "4", "--access-log", "--working-dir", str(BENCH),
        "bare_wsgi:app"])


NGINX_CONF = """\
# Generated by bench/run.py. Only 127.0.0.1; everything under {prefix}.
daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ application/rss+xml rss; }}
    sendfile on;
    tcp_nopush on;
    access_log {prefix}/logs/access.log;  # on, as it is by default and as gunicorn's is for us
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/root;
    }}
}}
"""


def nginx_static(ctx: Context) -> None:
    """nginx serving the same feed bytes as a static file (2 workers, otherwise stock settings)."""
    body, what = _feed_file(ctx)
    prefix, port = WORK / "nginx", free_port()
    for sub in ("root/feeds", "logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(body, prefix / "root" / "feeds" / "feed.rss")
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port))
    url = f"http://127.0.0.1:{port}/feeds/feed.rss"
    with started(["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")],
                 ctx.logs / "nginx.log", url, 30):
        feed_and_304(ctx, "nginx", url, get_feed(url)[0], what)


# Run order matters only for the HTTP references: they come after ours so they serve our real feed bytes.
PHASES = [
    Phase("Hugo: topic feeds of both corpora", hugo_build,
          ("hugo.main.wall", "hugo.main.rss", "hugo.small.wall", "hugo.small.rss")),
    Phase("PyYAML CSafeLoader on front matter", yaml_parse, ("yaml.per_item",)),
    Phase("os.scandir + stat walk", bare_walk, ("walk.main",)),
    Phase("syndicator build (cold, all feeds)", syndicator_build,
          ("build.main.wall", "build.main.rss", "build.small.wall", "build.small.rss", "rebuild.small.oneshot",
           "rebuild.small.watch", "rebuild.main.oneshot", "rebuild.main.watch", "target.rebuild_oneshot",
           "target.rebuild_watch")),
    Phase("syndicator serve: cold start, wrk, 304, rescan, warm restart", syndicator_serve,
          ("serve.main.cold", "serve.main.rss", "serve.main.pss", "serve.main.per_item", "serve.main.rps",
           "serve.main.rps304", "rescan.served", "change.main", "target.change", "target.restart",
           "restart.main.wall", "restart.main.base_url", "rescan.main", "walk.interleaved")),
    Phase("syndicator serve --server granian: wrk, 304", granian_serve, ("serve.granian.rps", "serve.granian.rps304")),
    Phase("bare WSGI under gunicorn + wrk", wsgi_gunicorn, ("wsgi.rps", "wsgi.rps304")),
    Phase("bare WSGI under granian + wrk", wsgi_granian, ("wsgi_granian.rps", "wsgi_granian.rps304")),
    Phase("nginx static file + wrk", nginx_static, ("nginx.rps", "nginx.rps304")),
]

_GUNICORN, _GRANIAN = "bare WSGI, same gunicorn settings", "bare WSGI, same granian settings"
_RESTART = "warm restart (serve on its parse cache), {main}"
ROWS = [
    Row("cold build of all topic feeds, {main}", "build.main.wall", "hugo.main.wall", "Hugo", "lower"),
    Row("peak RSS of that build", "build.main.rss", "hugo.main.rss", "Hugo", "lower"),
    Row("cold build of all topic feeds, {small}", "build.small.wall", "hugo.small.wall", "Hugo", "lower"),
    Row("peak RSS of that build", "build.small.rss", "hugo.small.rss", "Hugo", "lower"),
    Row("one changed file: `build` again over the export, parse cache warm, {main}", "rebuild.main.oneshot",
        "target.rebuild_oneshot", "issue 15 target (5 s)", "lower"),
    Row("one changed file: `build --watch` until swapped in, {main}", "rebuild.main.watch", "target.rebuild_watch",
        "issue 15 target (2 s)", "lower"),
    Row("one changed file: `build` again over the export, parse cache warm, {small}", "rebuild.small.oneshot",
        "target.rebuild_oneshot", "issue 15 target (5 s)", "lower"),
    Row("one changed file: `build --watch` until swapped in, {small}", "rebuild.small.watch", "target.rebuild_watch",
        "issue 15 target (2 s)", "lower"),
    Row("cold start (serve --base-url: subscription feeds rendered first) until /healthz, {main}", "serve.main.cold",
        "hugo.main.wall", "Hugo build", "lower"),
    Row("memory of serve after cold start", "serve.main.rss", "hugo.main.rss", "Hugo build peak RSS", "lower"),
    Row("peak PSS of serve during cold start", "serve.main.pss", "hugo.main.rss", "Hugo build peak RSS", "lower"),
    Row(_RESTART, "restart.main.wall", "hugo.main.wall", "Hugo build (always cold)", "lower"),
    Row(_RESTART, "restart.main.wall", "target.restart", "issue 5 target (3 s)", "lower"),
    Row("warm restart with --base-url (subscription feeds rendered first), {main}", "restart.main.base_url",
        "target.restart", "issue 5 target (3 s)", "lower"),
    Row("one changed file until its feed is served (fs events), {main}", "change.main", "target.change",
        "issue 5 target (1 s)", "lower"),
    Row("cold start per item", "serve.main.per_item", "yaml.per_item", "CSafeLoader parse only", "lower"),
    Row("no-change rescan, {main}", "rescan.main", "walk.interleaved", "os.scandir + stat walk, alternating",
        "lower"),
    Row("no-change rescan in a serving worker, {main}", "rescan.served", "walk.main", "os.scandir + stat walk",
        "lower"),
    Row("a topic feed from memory", "serve.main.rps", "wsgi.rps", _GUNICORN, "higher"),
    Row("a topic feed from memory", "serve.main.rps", "nginx.rps", "nginx, static file", "higher"),
    Row("304 Not Modified (If-None-Match)", "serve.main.rps304", "wsgi.rps304", _GUNICORN, "higher"),
    Row("304 Not Modified (If-None-Match)", "serve.main.rps304", "nginx.rps304", "nginx, static file", "higher"),
    Row("a topic feed from memory, serve --server granian", "serve.granian.rps", "wsgi_granian.rps", _GRANIAN,
        "higher"),
    Row("a topic feed from memory, serve --server granian", "serve.granian.rps", "serve.main.rps",
        "ours under gunicorn", "higher"),
    Row("304 Not Modified, serve --server granian", "serve.granian.rps304", "wsgi_granian.rps304", _GRANIAN,
        "higher"),
    Row("304 Not Modified, serve --server granian", "serve.granian.rps304", "serve.main.rps304",
        "ours under gunicorn", "higher"),
]


# ---------------------------------------------------------------------------------------------- report

def run_phase(ctx: Context, phase: Phase, durations: list[tuple[str, float]]) -> None:
    """Run one phase; a failure marks its missing keys n/a and the run goes on."""
    print(f"\n== {phase.name}", flush=True)
    started_at = time.monotonic()
    try:
        phase.fn(ctx)
    except Exception as exc:  # one broken measurement must not cost the other twenty minutes of results
        log = ctx.logs / f"error-{phase.fn.__name__}.txt"
        log.write_text(traceback.format_exc())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ctx.skip([k for k in phase.keys if k not in ctx.results], f"failed: {first[:200]} (bench/work/logs/{log.name})")
    durations.append((f"{phase.name} (load after: {loadavg()})", time.monotonic() - started_at))
    print(f"   ({durations[-1][1]:.0f} s)", flush=True)


def _cell(ctx: Context, key: str) -> str:
    if key not in ctx.results:
        return "n/a"
    value, unit = ctx.results[key].value, ctx.results[key].unit
    if math.isnan(value):
        return "nan"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def comparison(ctx: Context) -> str:
    """The comparison table in markdown; n/a rows say why in the notes."""
    rows = []
    for row in ROWS:
        notes = []
        for side, key in (("ours", row.ours), ("ref", row.reference)):
            result = ctx.results.get(key)
            if result is None:
                notes.append(f"{side}: {ctx.skipped.get(key, 'not measured')}")
            elif result.note:
                notes.append(f"{side}: {result.note}")
        ours, ref = ctx.results.get(row.ours), ctx.results.get(row.reference)
        what = row.what.format(main=f"{ctx.main.label} items/topics", small=f"{ctx.small.label} items/topics")
        rows.append([cell.replace("|", "\\|") for cell in (
            what, _cell(ctx, row.ours), row.reference_what, _cell(ctx, row.reference),
            f"{ours.value / ref.value:.2f}×" if ours and ref and ref.value else "—", row.better, "; ".join(notes))])
    return table(["measurement", "ours", "reference", "reference value", "ours ÷ ref", "better", "notes"], rows,
                 "lrlrrll")


def report(ctx: Context, facts: dict[str, str], versions: dict[str, str], durations: list[tuple[str, float]],
           load: tuple[str, str], interrupted: str = "") -> str:
    """Machine, tools and settings, the table, and how long each phase took."""
    out = ["# syndicator benchmark", ""]
    if interrupted:
        out += [f"**{interrupted}.**", ""]
    if ctx.quick:
        out += ["**--quick run: small corpora and short wrk runs; it tests the harness, not the code.**", ""]
    out += [f"Corpora: main {ctx.main.label} items/topics, small {ctx.small.label} (tools/gen_corpus.py, "
            f"default seed). wrk -t{ctx.wrk.threads} -c{ctx.wrk.connections} -d{ctx.wrk.seconds}s on 127.0.0.1 "
            f"({ctx.wrk.runs} run{'s' if ctx.wrk.runs > 1 else ''} per figure, the best reported), "
            f"on the same {facts['nproc']} cores as the server. Page cache warm. "
            f"`serve` runs with --workers 2 --interval {ctx.serve_interval}.", "",
            "Ratio is ours ÷ reference; \"better\" says which direction is good.", "",
            comparison(ctx), "", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in facts.items()]
    out += [f"- load average before / after: {load[0]} / {load[1]}"]
    # Our own run keeps about nproc + 1 runnable (server + wrk); more than that was someone else.
    if float(load[0].split()[0]) > 1 or float(load[1].split()[1]) > int(facts["nproc"]) + 1:
        out += ["- **the machine was busy with other work during this run (see the load averages, also per "
                "phase below): every number is pessimistic, the reference ones too; compare CPU seconds**"]
    out += ["", "Tools:", ""]
    out += [f"- {k}: {v}" for k, v in versions.items()]
    out += ["", "Phases:", ""]
    out += [f"- {name}: {seconds:.0f} s" for name, seconds in durations]
    return "\n".join(out) + "\n"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000, help="items in the main corpus")
    p.add_argument("--topics", type=int, default=1_000, help="topics in the main corpus")
    p.add_argument("--small-items", type=int, default=10_000, help="items in the second corpus")
    p.add_argument("--small-topics", type=int, default=200, help="topics in the second corpus")
    p.add_argument("--quick", action="store_true",
                   help="2,000/100 and 1,000/100 items/topics, 3 s wrk runs: tests the harness, not the code")
    p.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    p.add_argument("--wrk-seconds", type=int, default=None, help="duration of each wrk run (default 10, quick 3)")
    p.add_argument("--timeout", type=float, default=1200, help="limit for any one build, seconds")
    p.add_argument("--serve-timeout", type=float, default=900, help="limit for serve to become healthy, seconds")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to drop below 0.5")
    return p.parse_args(argv)


def _context(args: argparse.Namespace) -> Context:
    if args.quick:
        main, small = Corpus("main", 2_000, 100), Corpus("small", 1_000, 100)
    else:
        main, small = Corpus("main", args.items, args.topics), Corpus("small", args.small_items, args.small_topics)
    return Context(quick=args.quick, main=main, small=small,
                   wrk=Wrk(threads=2, connections=32, seconds=args.wrk_seconds or (3 if args.quick else 10),
                           runs=2 if args.quick else 5),
                   timeout=args.timeout, serve_timeout=args.serve_timeout,
                   # The default interval in full runs: rescans under load are part of the real cost.
                   serve_interval=10 if args.quick else 60, yaml_items=min(main.items, 10_000))


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the report, and write bench/RESULTS.md with --write."""
    args = _args(argv)
    ctx = _context(args)
    started_at = time.monotonic()
    durations: list[tuple[str, float]] = []
    WORK.mkdir(parents=True, exist_ok=True)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    load_before = loadavg()

    print("== tools", flush=True)
    t = time.monotonic()
    versions = ensure_tools()
    for name, version in versions.items():
        print(f"  {name}: {version}")
    # What `pip install` does for an installed package: the service's modules get their bytecode up front.
    # Run from this checkout (an editable install, PYTHONDONTWRITEBYTECODE set on many machines), every
    # start would otherwise compile them again (~0.15 s of each start here).
    subprocess.run(python_cmd("-m", "compileall", "-q", str(ROOT / "syndicator")), check=True, timeout=120)
    durations.append(("tools", time.monotonic() - t))

    print("\n== corpora", flush=True)
    t = time.monotonic()
    for corpus in (ctx.main, ctx.small):
        print(f"  corpus {corpus.label}: {corpus.path}", flush=True)
        if not ensure_corpus(corpus.path, corpus.items, corpus.topics, timeout=max(600.0, corpus.items * 0.02)):
            print("    (exists)", flush=True)
    durations.append(("corpora (generate when missing)", time.monotonic() - t))
    # Every file read once, so no measurement pays (or is spared) the disk reads of another.
    t, read = time.monotonic(), 0
    for corpus in (ctx.main, ctx.small):
        for folder, _, files in os.walk(corpus.path):
            read += sum(len(Path(folder, name).read_bytes()) for name in files)
    durations.append(("warm page cache", time.monotonic() - t))
    print(f"  page cache warmed: {read / 1e6:,.0f} MB read in {durations[-1][1]:.1f} s", flush=True)

    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so every server and build we started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    interrupted = current = ""
    try:
        for phase in PHASES:
            current = phase.name
            run_phase(ctx, phase, durations)
    except (KeyboardInterrupt, SystemExit):
        interrupted = f"interrupted during {current!r}; later phases did not run"
        print(f"\n{interrupted}: reporting what was measured; not writing RESULTS.md", flush=True)
    durations.append(("total", time.monotonic() - started_at))

    text = report(ctx, machine(), versions, durations, (load_before, loadavg()), interrupted)
    print("\n" + text)
    if args.write and not interrupted:
        path = BENCH / "RESULTS.md"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
