"""OUR measurements: the extension point of the benchmark.

`OURS` (at the bottom) lists what run.py measures about syndicator. Each Phase runs `fn(ctx)`, which
records results with `ctx.record(key, value, unit, note)` under the keys the Phase names; run.COMPARISONS
pairs every key with a reference measurement and prints the ratio. To add or fill in a measurement:

1. write `def my_thing(ctx: Context) -> None` here; use the helpers in harness.py (`timed_run` for a
   command under /usr/bin/time -v, `server` + `wait_http` + `run_wrk` for HTTP, `ctx.logs` for logs);
2. raise `Unavailable("why")` while the feature does not exist, so the table says n/a and why;
3. add a Phase to OURS, and a row to run.COMPARISONS if the key is new.

Keys produced (and paired in run.COMPARISONS):
    build.<main|small>.wall / .rss   `syndicator build --content DIR --out DIR`: cold build of every feed
    serve.main.cold / .rss / .per_item   `syndicator serve`: time to healthy, peak RSS, cold start per item
    serve.main.rps / .rps304         a topic feed from memory under gunicorn + wrk, and 304s
    rescan.served                    no-change rescan in a serving worker (`scan_seconds` of /status, one)
    restart.main.wall                `serve` again on the parse cache the cold start left (needs --cache-dir),
                                     median of RESTARTS
    rescan.main / walk.interleaved   no-change rescan and bare walk alternating in one process (rescan.py)
    serve.granian.rps / .rps304      the same feed and 304s under `serve --server granian`

"Cold" means no parse cache: when a command has --cache-dir, every cold run gets a fresh, empty one in
bench/work (the default, ~/.cache/syndicator, would survive between runs and make the next cold start warm).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from harness import (
    ROOT,
    WORK,
    Context,
    Corpus,
    PeakPss,
    Phase,
    ServerFailed,
    Unavailable,
    free_port,
    http_get,
    python_cmd,
    run_wrk,
    server,
    timed_run,
    tree_cpu_seconds,
    tree_memory_mb,
    tree_pss_mb,
    wait_http,
    wait_idle,
)

RESTARTS = 3  # warm restarts measured; the median is reported
RESCAN_ROUNDS = 5  # no-change rescans (and bare walks) in bench/rescan.py
# gunicorn lines that mean workers will never become healthy: fail fast instead of waiting out the deadline.
FATAL = ("WORKER TIMEOUT", "Worker failed to boot", "Reason: App failed to load")


def _flags(command: str) -> set[str]:
    """The --flags `syndicator <command>` accepts; empty when the command does not exist."""
    proc = subprocess.run(python_cmd("-m", "syndicator.cli", command, "--help"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    return set(re.findall(r"--[a-z][a-z-]*", proc.stdout)) if proc.returncode == 0 else set()


def _fresh(path: Path) -> Path:
    """An empty directory at `path` (whatever was there is gone)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def cold_build(ctx: Context) -> None:
    """`syndicator build` writing every feed of the main and the small corpus, from nothing."""
    flags = _flags("build")
    if not flags:
        raise Unavailable("`syndicator build` does not exist yet")
    for corpus in (ctx.small, ctx.main):  # small first: its number survives a main build that times out
        try:
            _build(ctx, corpus, flags)
        except RuntimeError as exc:
            ctx.skip([f"build.{corpus.key}.wall", f"build.{corpus.key}.rss"],
                     f"failed: {str(exc).splitlines()[0][:200]}")


def _build(ctx: Context, corpus: Corpus, flags: set[str]) -> None:
    """One cold `syndicator build` of `corpus` under /usr/bin/time, into a fresh directory."""
    # --out may be a symlink swapped to each build: a fresh parent directory removes every earlier build.
    parent = _fresh(WORK / f"build-{corpus.items}-{corpus.topics}")
    out = parent / "site"
    cmd = python_cmd("-m", "syndicator.cli", "build", "--content", str(corpus.path), "--out", str(out))
    if "--base-url" in flags:  # feeds carry absolute self links, so build insists on one
        cmd += ["--base-url", "http://127.0.0.1/"]
    if "--cache-dir" in flags:
        cmd += ["--cache-dir", str(_fresh(parent / "cache"))]
    timed = timed_run(cmd, ctx.logs / f"build-{corpus.key}.log", timeout=ctx.timeout, cwd=ROOT)
    feeds = sum(1 for _ in out.resolve().rglob("*.rss"))
    ctx.record(f"build.{corpus.key}.wall", timed.wall, "s",
               f"{feeds} .rss files (all kinds), CPU {timed.user + timed.sys:.0f} s")
    ctx.record(f"build.{corpus.key}.rss", timed.max_rss_mb, "MB")


# `syndicator serve` with gunicorn's worker timeout switched off. gunicorn (30 s default) kills a worker
# whose first heartbeat is late, and a worker only starts beating after its first scan; cli.py sets no
# timeout, so on a big corpus the stock command restarts its workers forever. Used only as a fallback.
NO_TIMEOUT_SERVE = ("import sys, gunicorn.config; gunicorn.config.Timeout.default = 0; "
                    "from syndicator.cli import main; sys.exit(main(sys.argv[1:]))")


def serve_feeds(ctx: Context) -> None:
    """`syndicator serve` on the main corpus: cold start, memory, feed throughput, 304s, no-change rescan."""
    try:
        _serve(ctx, python_cmd("-m", "syndicator.cli"), "")
    except ServerFailed as exc:
        if exc.marker != "WORKER TIMEOUT":
            raise
        print(f"    stock serve failed: {exc}; again with gunicorn's worker timeout off", flush=True)
        _serve(ctx, python_cmd("-c", NO_TIMEOUT_SERVE),
               f"stock serve: gunicorn WORKER TIMEOUT after {exc.seconds:.0f} s (workers killed mid-scan), so "
               "measured with gunicorn's worker timeout off")


def _serve(ctx: Context, syndicator: list[str], finding: str) -> None:
    corpus = ctx.main
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = ctx.logs / ("serve-no-timeout.log" if finding else "serve.log")
    cmd = [*syndicator, "serve", "--content", str(corpus.path), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "2", "--interval", str(ctx.serve_interval)]
    cache = None
    if "--cache-dir" in _flags("serve"):
        cache = _fresh(WORK / "serve-cache")  # cold: nothing cached; the warm restart below reuses it
        cmd += ["--cache-dir", str(cache)]
    with server(cmd, log, cwd=ROOT) as proc:
        sampler = PeakPss(proc.pid)
        healthy = wait_http(f"{base}/healthz", proc, log, ctx.serve_timeout, fatal=FATAL)
        # /healthz answers once the first worker has scanned; wait for the other before loading.
        idle = healthy + wait_idle(proc.pid, ctx.serve_timeout)
        peak_pss = sampler.stop()
        rss, peak, processes = tree_memory_mb(proc.pid)
        cpu = tree_cpu_seconds(proc.pid)
        ctx.record("serve.main.cold", healthy, "s", f"all workers done after ~{idle:.0f} s, CPU {cpu:.0f} s"
                   + (f"; {finding}" if finding else ""))
        ctx.record("serve.main.rss", peak, "MB",
                   f"sum of peak RSS of {processes} processes (gunicorn master + workers; shared pages "
                   f"counted in each); now {rss:,.0f} MB RSS, {tree_pss_mb(proc.pid):,.0f} MB PSS")
        ctx.record("serve.main.pss", peak_pss, "MB", "largest PSS sum of the process tree (master, workers, "
                   "parse processes), sampled every 0.5 s from start until idle")
        ctx.record("serve.main.per_item", healthy / corpus.items * 1e6, "µs/item",
                   "time to healthy / items")

        status = json.loads(http_get(f"{base}/status")[2])
        top = max(status["topics"], key=lambda t: t["items"])  # the fullest feed: feed_limit entries
        url = f"{base}/feeds/{top['slug']}.rss"
        code, headers, body = http_get(url)
        if code != 200:
            raise RuntimeError(f"{url}: {code}")
        ctx.sample_feed, ctx.sample_feed_name, ctx.sample_port = body, f"/feeds/{top['slug']}.rss", port
        full = run_wrk(ctx, url, ctx.logs / "wrk-serve.txt")
        ctx.record("serve.main.rps", full.rps, "req/s",
                   f"{ctx.sample_feed_name}, {len(body) / 1000:.0f} KB; {full.note()}")
        etag = headers.get("ETag", "")
        if http_get(url, {"If-None-Match": etag})[0] != 304:
            raise RuntimeError(f"{url} with If-None-Match {etag} is not a 304")
        cond = run_wrk(ctx, url, ctx.logs / "wrk-serve-304.txt", headers=[f"If-None-Match: {etag}"])
        ctx.record("serve.main.rps304", cond.rps, "req/s", cond.note())

        # A rescan that overlapped the wrk runs above would measure the load, not the rescan.
        loaded_until = dt.datetime.now(dt.timezone.utc)
        ctx.record("rescan.served", _no_change_rescan(base, loaded_until, ctx), "s",
                   "scan_seconds from /status: the first scheduled rescan to start after the wrk runs")
        ctx.record("change.main", _change_latency(base, corpus.path), "s",
                   "write of the newest item's file until 10 answers in a row of /feeds/all.rss carry the edit "
                   "(both workers), filesystem events on")
        ctx.record("target.change", 1.0, "s", "issue 5's target, not a measurement")
        ctx.record("target.restart", 3.0, "s", "issue 5's target, not a measurement")

    if cache is None:
        ctx.skip(["restart.main.wall"], "serve has no --cache-dir: a restart is another cold start")
        return
    # Same command, same cache directory, the server above stopped: what a deploy or a crash costs. Three
    # restarts, the median counts: one start is seconds long and the machine's speed drifts by a third.
    restarts, notes = [], []
    for run in range(RESTARTS):
        restart_log = log.with_name(f"{log.stem}-restart-{run + 1}.log")
        with server(cmd, restart_log, cwd=ROOT) as proc:
            healthy = wait_http(f"{base}/healthz", proc, restart_log, ctx.serve_timeout, fatal=FATAL)
            idle = healthy + wait_idle(proc.pid, ctx.serve_timeout)
            restarts.append(healthy)
            notes.append(f"{healthy:.2f} s (all workers done after ~{idle:.0f} s, CPU "
                         f"{tree_cpu_seconds(proc.pid):.0f} s)")
    ctx.record("restart.main.wall", statistics.median(restarts), "s",
               f"serve on the cache of the cold start; median of {RESTARTS} restarts: " + ", ".join(notes))

    # The same rescan in one process with the bare walk it is compared with, alternating, so both get
    # the same statistic under the same conditions (the served figure above is one sample in a worker).
    probe = subprocess.run(python_cmd(str(ROOT / "bench" / "rescan.py"), str(corpus.path), str(cache),
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
    tag = f"Edited{int(time.time())} "
    try:
        started = time.monotonic()
        newest.write_bytes(original.replace(b"title: ", f"title: {tag}".encode(), 1))
        in_a_row = 0
        while in_a_row < 10:
            if time.monotonic() - started > 120:
                raise RuntimeError(f"the edit of {newest.name} did not reach /feeds/all.rss within 120 s")
            in_a_row = in_a_row + 1 if tag.encode() in http_get(f"{base}/feeds/all.rss")[2] else 0
        return time.monotonic() - started
    finally:
        # Back as it was, mtime included: the warm restart measured next must find the content unchanged.
        newest.write_bytes(original)
        os.utime(newest, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        # ...and the workers must have taken the restore in: a worker writes its parse cache when stopped,
        # which would otherwise describe the edited file.
        in_a_row, restored = 0, time.monotonic()
        while in_a_row < 10 and time.monotonic() - restored < 120:
            in_a_row = 0 if tag.encode() in http_get(f"{base}/feeds/all.rss")[2] else in_a_row + 1


def _no_change_rescan(base: str, after: dt.datetime, ctx: Context) -> float:
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


def serve_granian(ctx: Context) -> None:
    """`syndicator serve --server granian` on the main corpus: the same feed and 304 under wrk. It starts
    on the parse cache the gunicorn phase left (a warm start), so only serving is compared."""
    corpus = ctx.main
    if "--server" not in _flags("serve"):
        raise Unavailable("serve has no --server option")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = ctx.logs / "serve-granian.log"
    cmd = [*python_cmd("-m", "syndicator.cli"), "serve", "--server", "granian", "--content", str(corpus.path),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--interval", str(ctx.serve_interval),
           "--cache-dir", str(WORK / "serve-cache")]
    with server(cmd, log, cwd=ROOT) as proc:
        healthy = wait_http(f"{base}/healthz", proc, log, ctx.serve_timeout, fatal=FATAL)
        wait_idle(proc.pid, ctx.serve_timeout)
        url = f"{base}{ctx.sample_feed_name or '/feeds/all.rss'}"
        code, headers, body = http_get(url)
        if code != 200:
            raise RuntimeError(f"{url}: {code}")
        # The same bytes as under gunicorn, up to the address in the self links (each server had its own
        # port); only the address is taken out, not every run of the port's digits in the feed.
        if ctx.sample_feed is not None and body.replace(f"127.0.0.1:{port}".encode(), b"") != \
                ctx.sample_feed.replace(f"127.0.0.1:{ctx.sample_port}".encode(), b""):
            raise RuntimeError(f"{url} under granian differs from the same feed under gunicorn")
        full = run_wrk(ctx, url, ctx.logs / "wrk-serve-granian.txt")
        ctx.record("serve.granian.rps", full.rps, "req/s",
                   f"{url.removeprefix(base)}, {len(body) / 1000:.0f} KB, healthy after {healthy:.1f} s "
                   f"(warm); {full.note()}")
        etag = headers.get("ETag", "")
        cond = run_wrk(ctx, url, ctx.logs / "wrk-serve-granian-304.txt", headers=[f"If-None-Match: {etag}"])
        ctx.record("serve.granian.rps304", cond.rps, "req/s", cond.note())


# ------------------------------------------------------------------------------------ extension point
OURS = [
    Phase("syndicator build (cold, all feeds)", cold_build,
          ("build.main.wall", "build.main.rss", "build.small.wall", "build.small.rss")),
    Phase("syndicator serve: cold start, wrk, 304, rescan, warm restart", serve_feeds,
          ("serve.main.cold", "serve.main.rss", "serve.main.pss", "serve.main.per_item", "serve.main.rps",
           "serve.main.rps304", "rescan.served", "change.main", "target.change", "target.restart", "restart.main.wall",
           "rescan.main", "walk.interleaved")),
    Phase("syndicator serve --server granian: wrk, 304", serve_granian, ("serve.granian.rps", "serve.granian.rps304")),
]
