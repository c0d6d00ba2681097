"""Benchmark syndicator against reference tools on the same generated corpus, on this machine.

    .venv/bin/python bench/run.py                    # 100,000 items / 1,000 topics (+ a 10,000-item corpus)
    .venv/bin/python bench/run.py --quick            # small sizes: checks the harness itself in ~a minute
    .venv/bin/python bench/run.py --write            # also write the table to bench/RESULTS.md

It generates the corpora into bench/work/ when missing, installs Hugo, wrk, nginx and GNU time with
apt-get when missing, then measures, in this order:

  reference  Hugo building only the topic RSS feeds (wall time, peak RSS; both corpora), PyYAML's
             CSafeLoader alone on front matter (µs/item), a bare os.scandir + stat walk (s)
  ours       whatever ours.OURS lists (the extension point): `syndicator build`, warm restart,
             `syndicator serve` cold start, a feed under wrk, 304s, a no-change rescan
  reference  a bare WSGI app under gunicorn with our worker settings, and nginx serving the same bytes
             as a static file, both under the same wrk load (only ever 127.0.0.1)

and prints one markdown table: each of our measurements, the reference it is compared with, and the
ratio ours ÷ reference. The page cache is warmed first, so every number is a warm-cache number.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass

from harness import (
    ROOT,
    WORK,
    Context,
    Corpus,
    Phase,
    Unavailable,
    ensure_tools,
    loadavg,
    machine,
    python_cmd,
    wait_quiet,
)
from ours import OURS
from reference import BUILD_REFERENCES, HTTP_REFERENCES


@dataclass(frozen=True)
class Row:
    """One line of the table: our key against a reference key."""

    what: str  # may use {main} / {small}: replaced with the corpus sizes
    ours: str
    reference: str
    reference_what: str
    better: str  # "lower" or "higher": which direction of ours ÷ reference is good


COMPARISONS = [
    Row("cold build of all topic feeds, {main}", "build.main.wall", "hugo.main.wall", "Hugo", "lower"),
    Row("peak RSS of that build", "build.main.rss", "hugo.main.rss", "Hugo", "lower"),
    Row("cold build of all topic feeds, {small}", "build.small.wall", "hugo.small.wall", "Hugo", "lower"),
    Row("peak RSS of that build", "build.small.rss", "hugo.small.rss", "Hugo", "lower"),
    Row("cold start (serve) until /healthz, {main}", "serve.main.cold", "hugo.main.wall", "Hugo build",
        "lower"),
    Row("memory of serve after cold start", "serve.main.rss", "hugo.main.rss", "Hugo build peak RSS",
        "lower"),
    Row("peak PSS of serve during cold start", "serve.main.pss", "hugo.main.rss", "Hugo build peak RSS",
        "lower"),
    Row("warm restart (serve on its parse cache), {main}", "restart.main.wall", "hugo.main.wall",
        "Hugo build (always cold)", "lower"),
    Row("warm restart (serve on its parse cache), {main}", "restart.main.wall", "target.restart",
        "issue 5 target (3 s)", "lower"),
    Row("one changed file until its feed is served (fs events), {main}", "change.main", "target.change",
        "issue 5 target (1 s)", "lower"),
    Row("cold start per item", "serve.main.per_item", "yaml.per_item", "CSafeLoader parse only", "lower"),
    Row("no-change rescan, {main}", "rescan.main", "walk.interleaved", "os.scandir + stat walk, alternating",
        "lower"),
    Row("no-change rescan in a serving worker, {main}", "rescan.served", "walk.main", "os.scandir + stat walk",
        "lower"),
    Row("a topic feed from memory", "serve.main.rps", "wsgi.rps", "bare WSGI, same gunicorn settings",
        "higher"),
    Row("a topic feed from memory", "serve.main.rps", "nginx.rps", "nginx, static file", "higher"),
    Row("304 Not Modified (If-None-Match)", "serve.main.rps304", "wsgi.rps304",
        "bare WSGI, same gunicorn settings", "higher"),
    Row("304 Not Modified (If-None-Match)", "serve.main.rps304", "nginx.rps304", "nginx, static file",
        "higher"),
    Row("a topic feed from memory, serve --server granian", "serve.granian.rps", "wsgi_granian.rps",
        "bare WSGI, same granian settings", "higher"),
    Row("a topic feed from memory, serve --server granian", "serve.granian.rps", "serve.main.rps",
        "ours under gunicorn", "higher"),
    Row("304 Not Modified, serve --server granian", "serve.granian.rps304", "wsgi_granian.rps304",
        "bare WSGI, same granian settings", "higher"),
    Row("304 Not Modified, serve --server granian", "serve.granian.rps304", "serve.main.rps304",
        "ours under gunicorn", "higher"),
]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000, help="items in the main corpus")
    p.add_argument("--topics", type=int, default=1_000, help="topics in both corpora")
    p.add_argument("--small-items", type=int, default=10_000, help="items in the second corpus")
    p.add_argument("--quick", action="store_true",
                   help="2,000/100 and 1,000/100 items/topics, 3 s wrk runs: tests the harness, not the code")
    p.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    p.add_argument("--wrk-seconds", type=int, default=None, help="duration of each wrk run (default 10, quick 3)")
    p.add_argument("--timeout", type=float, default=1200, help="limit for any one build, seconds")
    p.add_argument("--serve-timeout", type=float, default=900, help="limit for serve to become healthy, seconds")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to drop below 0.5")
    p.add_argument("--body-bytes", type=int, default=60_000,
                   help="size of the synthetic feed for the HTTP baselines when ours cannot provide one")
    return p.parse_args(argv)


def _context(args: argparse.Namespace) -> Context:
    if args.quick:
        main, small = Corpus("main", 2_000, 100), Corpus("small", 1_000, 100)
    else:
        main, small = Corpus("main", args.items, args.topics), Corpus("small", args.small_items, args.topics)
    return Context(quick=args.quick, main=main, small=small,
                   wrk_seconds=args.wrk_seconds or (3 if args.quick else 10), wrk_threads=2, wrk_connections=32,
                   wrk_runs=2 if args.quick else 5,
                   timeout=args.timeout, serve_timeout=args.serve_timeout,
                   # The default interval in full runs: rescans under load are part of the real cost.
                   serve_interval=10 if args.quick else 60,
                   body_bytes=args.body_bytes, yaml_items=min(main.items, 10_000))


def ensure_corpus(corpus: Corpus, timeout: float) -> None:
    """Generate the corpus unless a complete one is there (the marker is written last)."""
    marker = corpus.path / ".complete"
    if marker.exists():
        print(f"  corpus {corpus.label}: {corpus.path} (exists)", flush=True)
        return
    print(f"  corpus {corpus.label}: generating into {corpus.path} ...", flush=True)
    subprocess.run(python_cmd(str(ROOT / "tools" / "gen_corpus.py"), "--out", str(corpus.path),
                              "--items", str(corpus.items), "--topics", str(corpus.topics)),
                   check=True, timeout=timeout)
    marker.write_text("")


def warm_page_cache(corpora: list[Corpus]) -> int:
    """Read every file once, so no measurement pays (or is spared) the disk reads of another."""
    total = 0
    for corpus in corpora:
        for folder, _, files in os.walk(corpus.path):
            for name in files:
                with open(os.path.join(folder, name), "rb") as f:
                    total += len(f.read())
    return total


def run_phase(ctx: Context, phase: Phase, durations: list[tuple[str, float]]) -> None:
    """Run one phase; a failure marks its missing keys n/a and the run goes on."""
    print(f"\n== {phase.name}", flush=True)
    started = time.monotonic()
    try:
        phase.fn(ctx)
    except Unavailable as exc:
        ctx.skip([k for k in phase.keys if k not in ctx.results], str(exc))
    except Exception as exc:  # one broken measurement must not cost the other twenty minutes of results
        log = ctx.logs / f"error-{phase.fn.__name__}.txt"
        log.write_text(traceback.format_exc())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ctx.skip([k for k in phase.keys if k not in ctx.results], f"failed: {first[:200]} (bench/work/logs/{log.name})")
    durations.append((f"{phase.name} (load after: {loadavg()})", time.monotonic() - started))
    print(f"   ({durations[-1][1]:.0f} s)", flush=True)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "nan"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def _cell(ctx: Context, key: str) -> str:
    if key in ctx.results:
        r = ctx.results[key]
        return _fmt(r.value, r.unit)
    return "n/a"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def table(ctx: Context) -> str:
    """The comparison table in markdown; n/a rows say why in the notes."""
    sizes = {"main": ctx.main.label, "small": ctx.small.label}
    lines = ["| measurement | ours | reference | reference value | ours ÷ ref | better | notes |",
             "|---|---:|---|---:|---:|---|---|"]
    for row in COMPARISONS:
        ours, ref = ctx.results.get(row.ours), ctx.results.get(row.reference)
        ratio = f"{ours.value / ref.value:.2f}×" if ours and ref and ref.value else "—"
        notes = []
        if ours and ours.note:
            notes.append(f"ours: {ours.note}")
        elif not ours:
            notes.append(f"ours: {ctx.skipped.get(row.ours, 'not measured')}")
        if ref and ref.note:
            notes.append(f"ref: {ref.note}")
        elif not ref:
            notes.append(f"ref: {ctx.skipped.get(row.reference, 'not measured')}")
        what = row.what.format(main=f"{sizes['main']} items/topics", small=f"{sizes['small']} items/topics")
        lines.append(f"| {_md(what)} | {_cell(ctx, row.ours)} | {_md(row.reference_what)} | "
                     f"{_cell(ctx, row.reference)} | {ratio} | {row.better} | {_md('; '.join(notes))} |")
    return "\n".join(lines)


def report(ctx: Context, facts: dict[str, str], versions: dict[str, str], durations: list[tuple[str, float]],
           load: tuple[str, str], interrupted: str = "") -> str:
    """Machine, tools and settings, the table, and how long each phase took."""
    out = ["# syndicator benchmark", ""]
    if interrupted:
        out += [f"**{interrupted}.**", ""]
    if ctx.quick:
        out += ["**--quick run: small corpora and short wrk runs; it tests the harness, not the code.**", ""]
    out += [f"Corpora: main {ctx.main.label} items/topics, small {ctx.small.label} (tools/gen_corpus.py, "
            f"default seed). wrk -t{ctx.wrk_threads} -c{ctx.wrk_connections} -d{ctx.wrk_seconds}s on 127.0.0.1 "
            f"({ctx.wrk_runs} run{'s' if ctx.wrk_runs > 1 else ''} per figure, the best reported), "
            f"on the same {facts['nproc']} cores as the server. Page cache warm. "
            f"`serve` runs with --workers 2 --interval {ctx.serve_interval}.", "",
            "Ratio is ours ÷ reference; \"better\" says which direction is good.", "",
            table(ctx), "", "Machine:", ""]
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


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the report, and write bench/RESULTS.md with --write."""
    args = _args(argv)
    ctx = _context(args)
    started = time.monotonic()
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
        ensure_corpus(corpus, timeout=max(600.0, corpus.items * 0.02))
    durations.append(("corpora (generate when missing)", time.monotonic() - t))
    t = time.monotonic()
    read = warm_page_cache([ctx.main, ctx.small])
    durations.append(("warm page cache", time.monotonic() - t))
    print(f"  page cache warmed: {read / 1e6:,.0f} MB read in {durations[-1][1]:.1f} s", flush=True)

    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so every server and build we started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    interrupted = current = ""
    try:
        for phase in [*BUILD_REFERENCES, *OURS, *HTTP_REFERENCES]:
            current = phase.name
            run_phase(ctx, phase, durations)
    except (KeyboardInterrupt, SystemExit):
        interrupted = f"interrupted during {current!r}; later phases did not run"
        print(f"\n{interrupted}: reporting what was measured; not writing RESULTS.md", flush=True)
    durations.append(("total", time.monotonic() - started))

    text = report(ctx, machine(), versions, durations, (load_before, loadavg()), interrupted)
    print("\n" + text)
    if args.write and not interrupted:
        path = ROOT / "bench" / "RESULTS.md"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
