#!/usr/bin/env python3
"""Load test: `syndicator serve` under many readers while a writer keeps changing the content.

    .venv/bin/python bench/load.py                       # 60 s, 5,000 items / 100 topics, 8 clients
    .venv/bin/python bench/load.py --seconds 300         # a long run
    .venv/bin/python bench/load.py --items 300 --topics 10 --seconds 15   # what tests/test_load.py runs

One command, bounded in time, 127.0.0.1 only. It generates a corpus (tools/gen_corpus.py) in a scratch
directory, starts `syndicator serve` (gunicorn, 2 workers, --interval 1, filesystem events on), then for
--seconds runs

- a writer thread that every 200-300 ms edits (atomically, or in place like a careless editor), adds or
  deletes an item file;
- --clients reader threads (http.client, keep-alive) that GET random topic feeds in every format, the
  all-items feeds, a few `?limit=` feeds and `/` (popularity skewed, Zipf-like), with and without gzip,
  as a feed reader or as a browser, and with If-None-Match / If-Modified-Since from what any reader saw
  before.

Checks (any failure makes the exit code 1):
- no 5xx and no transport errors (a request that meets a keep-alive connection the server closed at that
  very moment is sent again on a new connection, as HTTP clients do, and counted in the table);
- no malformed document: every 200 body parses (feedparser bozo == 0 for RSS/Atom, json.loads and the
  JSON Feed shape for JSON, a whole page for HTML);
- every ETag belongs to its body: '"' + first 32 hex of sha256(body) + '-b' for the browser variant of an
  XML feed + '-gz' when gzipped (hash of the decompressed body), as documents.make_document and
  Document.variant_etag make it; a 304 answer to If-None-Match carries the tag that was sent;
- memory stays flat: RSS (VmRSS from /proc) of the gunicorn master and of each worker grows by at most
  --rss-growth (fraction) + --rss-slack-mb from "start" to the end. "start" is taken after a warm-up pass
  that fetches every URL on several new connections (each worker renders documents lazily, once) and
  --warmup seconds of the load itself;
- no worker was replaced (no crash, no timeout), the server is still running, and its log holds no
  ERROR record (a rescan that raised, a request that failed);
- afterwards the service converges: every worker's /status shows exactly what a fresh scan of the
  directory gives (items, topics with counts, problems).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import http.client
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, Sampler, children, ensure_corpus, free_port, http_get, memory_kib, server, table, wait_http

FEED_ACCEPT = {
    "rss": "application/rss+xml, application/xml;q=0.9, */*;q=0.8",
    "atom": "application/atom+xml, application/xml;q=0.9, */*;q=0.8",
    "json": "application/feed+json, application/json;q=0.9, */*;q=0.8",
    "html": "text/html, */*;q=0.5",
}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


# ----------------------------------------------------------------------------- checking documents


class Validator:
    """Checks documents whole, once per distinct body (identical bytes parse identically)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], str] = {}  # (kind, sha256) -> "" when good, else the reason
        self._lock = threading.Lock()

    def check(self, kind: str, body: bytes, digest: str) -> str:
        key = (kind, digest)
        with self._lock:
            found = self._known.get(key)
        if found is not None:
            return found
        reason = self._check(kind, body)
        with self._lock:
            self._known[key] = reason
        return reason

    @property
    def distinct(self) -> int:
        return len(self._known)

    @staticmethod
    def _check(kind: str, body: bytes) -> str:
        try:
            if kind in ("rss", "atom"):
                import feedparser

                parsed = feedparser.parse(body)
                if parsed.bozo:
                    return f"feedparser bozo: {parsed.get('bozo_exception')!r}"[:300]
                if kind == "rss" and parsed.version != "rss20" or kind == "atom" and parsed.version != "atom10":
                    return f"feedparser sees {parsed.version!r}"
                return ""
            if kind == "json":
                doc = json.loads(body)
                if doc.get("version") != "https://jsonfeed.org/version/1.1" or not isinstance(doc.get("items"), list):
                    return "not a JSON Feed 1.1 document"
                return ""
            if kind == "html":
                text = body.decode("utf-8")
                if not text.lstrip().lower().startswith("<!doctype html") or "</html>" not in text[-64:]:
                    return "not a whole HTML page"
                return ""
        except Exception as exc:  # any failure to read it is a malformed document
            return f"{type(exc).__name__}: {exc}"[:300]
        return f"unknown kind {kind}"


def expected_etag(body: bytes, *, browser: bool, gzipped: bool) -> str:
    """documents.make_document + Document.variant_etag, recomputed from the bytes the client got."""
    return ('"' + hashlib.sha256(body).hexdigest()[:32] + ("-b" if browser else "") + ("-gz" if gzipped else "")
            + '"')


# ----------------------------------------------------------------------------- clients


@dataclass
class ClientStats:
    requests: int = 0
    status: Counter = field(default_factory=Counter)
    conditional: Counter = field(default_factory=Counter)  # kind of conditional request sent
    gzip_responses: int = 0
    malformed: int = 0
    etag_mismatch: int = 0
    errors: Counter = field(default_factory=Counter)
    stale_retries: int = 0  # requests resent because an idle keep-alive connection had just been closed
    latencies: list[float] = field(default_factory=list)
    bytes: int = 0
    examples: list[str] = field(default_factory=list)
    all_feed_tags: set[str] = field(default_factory=set)

    def example(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


def client_loop(port: int, targets: list[tuple[str, str]], weights: list[float], stop: threading.Event,
                stats: ClientStats, validator: Validator, seen: dict, seed: int) -> None:
    """One reader thread. `seen` ((url, gzip, browser) -> (ETag, Last-Modified)) is shared by all readers,
    like a population of feed readers polling the same popular feeds."""
    rng = random.Random(seed)
    conn: http.client.HTTPConnection | None = None
    cumulative = list(itertools.accumulate(weights))
    while not stop.is_set():
        url, kind = rng.choices(targets, cum_weights=cumulative)[0]
        gzipped_asked = rng.random() < 0.5
        browser = kind in ("rss", "atom") and rng.random() < 0.15
        headers = {"Accept": BROWSER_ACCEPT if browser else FEED_ACCEPT[kind],
                   "Accept-Encoding": "gzip" if gzipped_asked else "identity", "User-Agent": "syndicator-load"}
        key = (url, gzipped_asked, browser)
        previous = seen.get(key)
        sent_tag = None
        roll = rng.random()
        if previous and roll < 0.4:
            headers["If-None-Match"] = sent_tag = previous[0]
            stats.conditional["If-None-Match"] += 1
        elif previous and previous[1] and roll < 0.55:
            headers["If-Modified-Since"] = previous[1]
            stats.conditional["If-Modified-Since"] += 1
        started = time.perf_counter()
        try:
            try:
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", url, headers=headers)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed this idle keep-alive connection (gunicorn's keepalive timeout) just as
                # the request went out; nothing was answered. Like any HTTP client (RFC 9112 9.3.1), send
                # the idempotent request again on a new connection. Counted, not an error.
                stats.stale_retries += 1
                conn.close()
                started = time.perf_counter()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", url, headers=headers)
                response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            stats.errors[type(exc).__name__] += 1
            stats.example(f"{url}: {type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.requests += 1
        stats.status[response.status] += 1
        stats.bytes += len(raw)
        etag = response.getheader("ETag")
        if response.will_close:
            conn.close()
            conn = None
        if response.status >= 500:
            stats.example(f"{url}: HTTP {response.status}: {raw[:200]!r}")
            continue
        if response.status == 304:
            if sent_tag is not None and etag != sent_tag:
                stats.etag_mismatch += 1
                stats.example(f"{url}: 304 for If-None-Match {sent_tag} carries ETag {etag}")
            continue
        if response.status != 200:
            stats.example(f"{url}: HTTP {response.status}: {raw[:200]!r}")
            continue
        gzipped = response.getheader("Content-Encoding") == "gzip"
        if gzipped != gzipped_asked:
            stats.etag_mismatch += 1
            stats.example(f"{url}: asked gzip={gzipped_asked}, got Content-Encoding "
                          f"{response.getheader('Content-Encoding')}")
        stats.gzip_responses += gzipped
        try:
            body = gzip.decompress(raw) if gzipped else raw
        except (OSError, EOFError) as exc:
            stats.malformed += 1
            stats.example(f"{url}: broken gzip: {exc}")
            continue
        digest = hashlib.sha256(body).hexdigest()
        reason = validator.check(kind, body, digest)
        if reason:
            stats.malformed += 1
            stats.example(f"{url}: malformed {kind}: {reason}")
        want = expected_etag(body, browser=browser, gzipped=gzipped)
        if etag != want:
            stats.etag_mismatch += 1
            stats.example(f"{url}: ETag {etag} but the body hashes to {want}")
        if url.startswith("/feeds/all."):
            stats.all_feed_tags.add(digest)
        seen[key] = (etag or "", response.getheader("Last-Modified"))
    if conn is not None:
        conn.close()


# ----------------------------------------------------------------------------- writer


@dataclass
class WriterStats:
    ops: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def writer_loop(content: Path, stop: threading.Event, stats: WriterStats, seed: int) -> None:
    """Every 200-300 ms: edit (atomically or in place), add or delete an item file."""
    rng = random.Random(seed)
    news = content / "news"
    files = sorted(news.glob("*.md"))
    added: list[Path] = []
    n = 0
    while not stop.wait(rng.uniform(0.2, 0.3)):
        n += 1
        op = rng.choices(["edit", "edit-in-place", "add", "delete"], weights=[4, 1, 3, 2])[0]
        try:
            if op in ("edit", "edit-in-place"):
                path = rng.choice(files + added)
                text = path.read_text(encoding="utf-8")
                text = re.sub(r"^title: .*$", f"title: 'Load edit {n}: {path.stem[:40]}'", text, count=1,
                              flags=re.M)
                if op == "edit":
                    tmp = path.with_name(path.name + ".tmp")  # ignored by the scanner until renamed
                    tmp.write_text(text, encoding="utf-8")
                    os.replace(tmp, path)
                else:
                    with open(path, "w", encoding="utf-8") as f:  # truncate, then write: a window of half
                        f.write(text)
            elif op == "add":
                source = rng.choice(files).read_text(encoding="utf-8")
                now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
                text = re.sub(r"^title: .*$", f"title: 'Load added {n}'", source, count=1, flags=re.M)
                text = re.sub(r"^webUrl: .*$", f"webUrl: https://load.example.org/added/{n}", text, count=1,
                              flags=re.M)
                text = re.sub(r"^publishedDateTime: .*$", f"publishedDateTime: {now:%Y-%m-%dT%H:%M:%SZ}", text,
                              count=1, flags=re.M)
                text = re.sub(r"^updatedDateTime: .*\n", "", text, count=1, flags=re.M)
                path = news / f"load-added-{n:06d}.md"
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
                added.append(path)
            else:
                pool = added if added and rng.random() < 0.7 else files
                if len(pool) <= 1:
                    continue
                path = pool.pop(rng.randrange(len(pool)))
                path.unlink()
            stats.ops[op] += 1
        except OSError as exc:
            stats.errors.append(f"{op}: {exc}")


# ----------------------------------------------------------------------------- server


def warm_up(port: int, targets: list[tuple[str, str]], threads: int) -> float:
    """Fetch every URL a few times, each on a new connection, so that every worker has rendered every
    document before the 'start' RSS is taken (documents are rendered lazily, once per worker)."""
    started = time.monotonic()

    def fetch(url: str) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", url, headers={"Connection": "close", "Accept-Encoding": "gzip"})
            conn.getresponse().read()
            conn.close()
        except (OSError, http.client.HTTPException):
            pass  # the load phase counts errors; this only warms caches

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fetch, [url for url, _kind in targets for _ in range(4)]))
    return time.monotonic() - started


def expected_status(content: Path, cache_dir: Path) -> dict:
    """What a fresh scan of the directory gives, in /status terms (the server's parse cache, copied,
    makes it fast: only files changed since the workers last saved it are parsed)."""
    sys.path.insert(0, str(ROOT))
    from syndicator.config import Settings
    from syndicator.scan import Scanner
    from syndicator.snapshot import build_snapshot

    cache_file = Settings(content=str(content), cache_dir=str(cache_dir)).cache_file
    with tempfile.TemporaryDirectory(prefix="load-cache-") as scratch:
        copy = None
        if cache_file is not None and cache_file.is_file():
            copy = Path(scratch) / "cache"
            shutil.copy(cache_file, copy)
            os.chmod(copy, 0o600)
            os.chmod(scratch, 0o700)
        scanner = Scanner(content, workers=os.cpu_count() or 1, cache_file=copy)
        snapshot = build_snapshot(scanner.scan())
    return {"items": len(snapshot.all_items),
            "topics": [{"slug": t.slug, "name": t.name, "items": len(t.items)} for t in snapshot.topics.values()],
            "problems": sorted(p.path for p in snapshot.problems)}


def observed_status(base: str) -> dict:
    """What a worker's /status says, in the terms of expected_status."""
    status = json.loads(http_get(base + "/status")[2])
    return {"items": status["items"],
            "topics": [{key: t[key] for key in ("slug", "name", "items")} for t in status["topics"]],
            "problems": sorted(p["path"] for p in status["problems"])}


# ----------------------------------------------------------------------------- report


def logged_errors(text: str) -> Counter:
    """ERROR/CRITICAL records of the server log, each with the exception that ended its traceback."""
    found: Counter = Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " ERROR " not in line and " CRITICAL " not in line and "[CRITICAL]" not in line:
            continue
        message = line.split(" ERROR ", 1)[-1].strip()
        j = i + 1
        if j < len(lines) and lines[j].startswith("Traceback"):
            while j + 1 < len(lines) and (lines[j + 1].startswith((" ", "Traceback", "During handling", "The above"))
                                          or not lines[j + 1].strip()):
                j += 1
            if j + 1 < len(lines):
                message += " -> " + lines[j + 1].strip()
        found[message[:300]] += 1
    return found


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.1f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="length of the load phase (default 60)")
    ap.add_argument("--items", type=int, default=5000, help="items in the generated corpus (default 5000)")
    ap.add_argument("--topics", type=int, default=100, help="topics in the generated corpus (default 100)")
    ap.add_argument("--clients", type=int, default=8, help="reader threads (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    ap.add_argument("--interval", type=int, default=1, help="rescan interval in seconds (default 1)")
    ap.add_argument("--seed", type=int, default=73)
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of load after the warm-up pass before the 'start' RSS is taken "
                         "(default: a sixth of --seconds, at most 15)")
    ap.add_argument("--rss-growth", type=float, default=0.25, help="allowed RSS growth, fraction (default 0.25)")
    ap.add_argument("--rss-slack-mb", type=float, default=24, help="allowed RSS growth on top, MiB (default 24)")
    ap.add_argument("--startup-timeout", type=float, default=600)
    ap.add_argument("--settle-timeout", type=float, default=60,
                    help="seconds the server may take to serve exactly the final content after the load")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (corpus, server log)")
    args = ap.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(15.0, args.seconds / 6)

    work = Path(tempfile.mkdtemp(prefix="syndicator-load-", dir=args.work))
    content, cache_dir, log = work / "content", work / "cache", work / "serve.log"
    print(f"load: generating {args.items:,} items / {args.topics:,} topics in {content}", flush=True)
    ensure_corpus(content, args.items, args.topics, "--seed", str(args.seed))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATOR_")}
    cmd = [sys.executable, "-m", "syndicator.cli", "serve", "--content", str(content), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(args.workers), "--interval", str(args.interval),
           "--cache-dir", str(cache_dir), "--log-level", "WARNING"]
    print(f"load: {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    failures: list[str] = []
    # gunicorn's graceful_timeout is 30 s: the group is killed only after the workers had theirs.
    with server(cmd, log, cwd=ROOT, env=env, grace=35) as proc:
        # RSS of the master and each worker (its direct children) in KiB, once a second during the load.
        monitor = Sampler(lambda: memory_kib([proc.pid, *children(proc.pid)]), 1.0)
        try:
            wait_http(base + "/healthz", proc, log, args.startup_timeout)
            # Every worker must be up (gunicorn forks them after the master's first scan).
            deadline = time.monotonic() + 60
            while len(children(proc.pid)) < args.workers and time.monotonic() < deadline:
                time.sleep(0.1)
            ready_seconds = time.monotonic() - started
            status = json.loads(http_get(base + "/status")[2])
            slugs = [t["slug"] for t in status["topics"]]
            targets: list[tuple[str, str]] = [("/", "html")]
            for slug in ["all", *slugs]:
                for fmt in ("rss", "atom", "json"):
                    targets.append((f"/feeds/{slug}.{fmt}", fmt))
            targets += [(f"/feeds/{rnd_slug}.{fmt}?limit=10", fmt)
                        for rnd_slug in random.Random(args.seed).sample(slugs, min(5, len(slugs)))
                        for fmt in ("rss", "atom", "json")]
            # Popularity is skewed, as for real feeds: a few topics get most of the traffic (Zipf-like).
            order = random.Random(args.seed).sample(range(len(targets)), len(targets))
            weights = [0.0] * len(targets)
            for rank, index in enumerate(order):
                weights[index] = 1 / (rank + 1) ** 0.8
            ready_rss = monitor.sample()
            warm_seconds = warm_up(port, targets, args.clients)
            print(f"load: ready in {ready_seconds:.1f} s ({status['items']:,} items, {len(slugs):,} topics, "
                  f"{len(targets):,} URLs); master {proc.pid}, workers {children(proc.pid)}; "
                  f"running {args.seconds:.0f} s with {args.clients} clients", flush=True)

            stop = threading.Event()
            validator = Validator()
            client_stats = [ClientStats() for _ in range(args.clients)]
            writer_stats = WriterStats()
            seen: dict = {}
            threads = [threading.Thread(target=client_loop, name=f"client-{i}", daemon=True,
                                        args=(port, targets, weights, stop, client_stats[i], validator, seen,
                                              args.seed + i))
                       for i in range(args.clients)]
            writer = threading.Thread(target=writer_loop, name="writer", daemon=True,
                                      args=(content, stop, writer_stats, args.seed))
            monitor.start()
            load_started = time.monotonic()
            for t in threads:
                t.start()
            writer.start()
            warm_rss: dict[int, int] | None = None
            while (elapsed := time.monotonic() - load_started) < args.seconds:
                if warm_rss is None and elapsed >= warmup:
                    warm_rss = monitor.sample()
                if proc.poll() is not None:
                    failures.append(f"server exited with {proc.returncode} during the load")
                    break
                time.sleep(0.2)
            stop.set()
            writer.join(timeout=10)
            for t in threads:
                t.join(timeout=40)
            load_seconds = time.monotonic() - load_started
            end_rss = monitor.sample()
            monitor.stop()
            if warm_rss is None:
                warm_rss = ready_rss

            # Afterwards: every worker converges on exactly what is on disk.
            settle_started = time.monotonic()
            expected = expected_status(content, cache_dir)
            last = None
            settled = False
            deadline = time.monotonic() + args.settle_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                views = [observed_status(base) for _ in range(4 * args.workers)]
                last = views[-1]
                if all(view == expected for view in views):
                    settled = True
                    break
                time.sleep(0.5)
            settle_seconds = time.monotonic() - settle_started
            monitor.sample()  # the workers still there at the end count as seen
        finally:
            monitor.stop()
    # Each sample's processes other than the master: the worker sets, in the order they were seen.
    worker_sets: list[tuple[int, ...]] = []
    for sample in monitor.samples:
        workers = tuple(sorted(pid for pid in sample if pid != proc.pid))
        if not worker_sets or worker_sets[-1] != workers:
            worker_sets.append(workers)
    seen_workers = sorted({pid for workers in worker_sets for pid in workers})

    # ------------------------------------------------------------------ totals and checks
    total = ClientStats()
    for s in client_stats:  # counts add up, collections are joined
        for name, value in vars(s).items():
            mine = getattr(total, name)
            if isinstance(mine, int):
                setattr(total, name, mine + value)
            elif isinstance(mine, list):
                mine.extend(value)
            else:  # a Counter adds, a set joins
                mine.update(value)
    del total.examples[5:]
    five_xx = sum(n for code, n in total.status.items() if code >= 500)
    other = sum(n for code, n in total.status.items() if code not in (200, 304) and code < 500)
    share_304 = total.status[304] / total.requests if total.requests else 0.0

    if total.requests == 0:
        failures.append("no requests were answered")
    if five_xx:
        failures.append(f"{five_xx} responses with a 5xx status")
    if other:
        failures.append(f"{other} responses with a status other than 200/304/5xx")
    if sum(total.errors.values()):
        failures.append(f"{sum(total.errors.values())} transport errors: {dict(total.errors)}")
    if total.malformed:
        failures.append(f"{total.malformed} malformed documents")
    if total.etag_mismatch:
        failures.append(f"{total.etag_mismatch} ETag mismatches")
    if writer_stats.errors:
        failures.append(f"writer errors: {writer_stats.errors[:3]}")
    if sum(writer_stats.ops.values()) < max(1, int(args.seconds * 2)):
        failures.append(f"the writer made only {sum(writer_stats.ops.values())} changes")
    if len(worker_sets) > 1 or len(seen_workers) != args.workers:
        failures.append(f"workers were replaced during the run: {worker_sets}")
    if not settled:
        failures.append(f"the service did not converge on the final content within {args.settle_timeout:.0f} s: "
                        f"expected items={expected['items']} problems={expected['problems'][:3]}, "
                        f"last seen items={last and last['items']} problems={last and last['problems'][:3]}")
    growth_rows = []
    for pid in [proc.pid, *seen_workers]:
        role = "master" if pid == proc.pid else "worker"
        start, end = warm_rss.get(pid), end_rss.get(pid)
        peak = max((sample.get(pid, 0) for sample in monitor.samples), default=0)
        growth_rows.append((f"RSS {role} {pid} MiB (ready / start / end / peak)",
                            f"{mib(ready_rss.get(pid))} / {mib(start)} / {mib(end)} / {mib(peak)}"))
        if start is not None and end is not None:
            allowed = start * (1 + args.rss_growth) + args.rss_slack_mb * 1024
            if end > allowed:
                failures.append(f"{role} {pid} RSS grew from {mib(start)} to {mib(end)} MiB "
                                f"(allowed up to {mib(int(allowed))})")
    log_text = log.read_text(errors="replace")
    server_errors = logged_errors(log_text)
    if server_errors:
        failures.append(f"{sum(server_errors.values())} errors in the server log: "
                        + "; ".join(f"{n} x {what}" for what, n in server_errors.most_common(3)))
    timeouts = log_text.count("WORKER TIMEOUT")
    if timeouts:
        failures.append(f"{timeouts} gunicorn worker timeouts")

    rows = [
        ("corpus", f"{args.items:,} items / {args.topics:,} topics"),
        ("server", f"gunicorn, {args.workers} workers x 4 threads, --interval {args.interval}"),
        ("clients / URLs", f"{args.clients} / {len(targets):,}"),
        ("ready after", f"{ready_seconds:.1f} s"),
        ("warm-up (every URL, both workers)", f"{warm_seconds:.1f} s"),
        ("load phase", f"{load_seconds:.1f} s"),
        ("requests", f"{total.requests:,}"),
        ("requests/s", f"{total.requests / load_seconds:,.1f}" if load_seconds else "-"),
        ("latency p50 / p99 / max", f"{percentile(total.latencies, 0.5) * 1000:,.1f} / "
                                    f"{percentile(total.latencies, 0.99) * 1000:,.1f} / "
                                    f"{max(total.latencies, default=0) * 1000:,.1f} ms"),
        ("status counts", ", ".join(f"{code}: {n:,}" for code, n in sorted(total.status.items())) or "-"),
        ("304 share", f"{share_304:.1%}"),
        ("conditional requests sent", ", ".join(f"{k}: {v:,}" for k, v in sorted(total.conditional.items()))),
        ("gzip responses", f"{total.gzip_responses:,}"),
        ("bytes received", f"{total.bytes / 1e6:,.1f} MB"),
        ("5xx", f"{five_xx:,}"),
        ("transport errors", f"{sum(total.errors.values()):,}"),
        ("resent after keep-alive close", f"{total.stale_retries:,}"),
        ("malformed documents", f"{total.malformed:,}"),
        ("ETag mismatches", f"{total.etag_mismatch:,}"),
        ("distinct bodies validated", f"{validator.distinct:,}"),
        ("versions of /feeds/all.* seen", f"{len(total.all_feed_tags):,}"),
        ("writer operations", f"{sum(writer_stats.ops.values()):,} (" + ", ".join(
            f"{k} {v}" for k, v in sorted(writer_stats.ops.items())) + ")"),
        ("converged on final content", f"{'yes' if settled else 'NO'} after {settle_seconds:.1f} s"),
        ("errors in the server log", f"{sum(server_errors.values()):,}"),
        *growth_rows,
        ("result", "PASS" if not failures else "FAIL"),
    ]
    print(table(["load test", ""], rows, "lr"), flush=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    for example in total.examples:
        print(f"  e.g. {example}")
    if args.keep:
        print(f"load: scratch directory kept: {work}")
    elif failures:
        shutil.rmtree(content, ignore_errors=True)  # keep the server log (and parse cache) to look into
        print(f"load: server log kept: {log}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
