#!/usr/bin/env python3
"""Issue 5: are there YAML parsers faster than PyYAML's CSafeLoader that give identical items and problems?

For every candidate that imports (missing ones are skipped with a note) this script:

1. times parsing of every front matter of the corpus's well-formed items (µs per item, one core,
   best of --repeats passes; parsers slower than 1 ms/item are timed on a stride sample);
2. checks equivalence end to end: `read_item` on every file with `syndicator.content.load_yaml` swapped
   for "candidate parse -> same `_check_shape`" and compares the Item or Problem with the stock
   PyYAML result (`read_topic` likewise for the topic files);
3. reports how the hostile files (`gen_corpus.py --bad`) fare: python tags refused? alias bombs bounded
   (and how long one takes)? broken YAML an error?
4. for context, times `read_item` with PyYAML per stage and profiles it (cProfile, top 15, 2,000 files).

    .venv/bin/python bench/yaml_parsers.py                        # 20,000 items, 100 topics, 5 % hostile
    .venv/bin/python bench/yaml_parsers.py --items 100000 --topics 1000
    .venv/bin/python bench/yaml_parsers.py --only pyyaml-c,yaml-rs --repeats 5

Corpora are generated with tools/gen_corpus.py under bench/work/ (gitignored) and reused when present.
A JSON copy of the results goes to bench/work/yaml_parsers-<items>.json. Candidates are not project
dependencies; install the ones to compare by hand (all from manylinux wheels except pyfastyaml, an sdist):

    .venv/bin/pip install rapidyaml yaml-rs fastyaml-rs pyyaml-rs oryaml rustyyaml ryaml xoryaml py-yaml12 \
        pyrs-yaml rs-turboyaml pyfastyaml 'ruamel.yaml[oldlibyaml]' saneyaml strictyaml

Timings are CPU time (time.process_time) pinned to one core; on a shared machine they still wander by
~30 %, which is why each candidate's speed is paired with CSafeLoader on the same chunks at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import gc
import importlib.metadata
import io
import json
import math
import os
import platform
import pstats
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from syndicator import content  # noqa: E402
from syndicator.model import Invalid, Item, Problem  # noqa: E402

Loads = Callable[[str], Any]
SLOW_PARSE_S = 0.2  # one document taking more CPU seconds than this is "pathological" and its outcome is cached
SLOW_PARSER_US = 1000.0  # parsers slower than this per item are timed and checked on a sample
CLOCK = time.process_time  # CPU time of this process: other work on the machine only blurs it a little


# ----------------------------------------------------------------------------- candidates


def _pyyaml(loader_name: str) -> Loads:
    loader = getattr(yaml, loader_name)

    def loads(text: str) -> Any:
        return yaml.load(text, Loader=loader)  # noqa: S506 - safe loaders only

    return loads


def _yaml_rs(parse_datetime: bool) -> Callable[[], Loads]:
    def factory() -> Loads:
        import yaml_rs

        # As close to PyYAML as it goes: last duplicate key wins (its default is an error), and the alias
        # replay budget matches content.MAX_NODES so a bomb fails fast (its default is 1,000,000 events).
        # parse_datetime=False because it also turns *quoted* '2020-05-19' into a date (a bug); plain text
        # timestamps are then read by content.parse_datetime, which takes ISO 8601 strings.
        limits = yaml_rs.AliasLimits(max_total_replayed_events=content.MAX_NODES)
        policy = yaml_rs.DuplicateKeyPolicy.LastWins

        def loads(text: str) -> Any:
            return yaml_rs.loads(text, alias_limits=limits, duplicate_key_policy=policy,
                                 parse_datetime=parse_datetime)

        return loads

    return factory


def _yaml_rs_default() -> Loads:
    import yaml_rs

    return yaml_rs.loads


def _attr(module: str, name: str) -> Callable[[], Loads]:
    def factory() -> Loads:
        return getattr(__import__(module, fromlist=[name]), name)

    return factory


def _turboyaml() -> Loads:
    import turboyaml

    def loads(text: str) -> Any:
        return turboyaml.load(text, yaml_1_1_bools=True)

    return loads


def _ruamel(pure: bool) -> Callable[[], Loads]:
    def factory() -> Loads:
        from ruamel.yaml import YAML

        loader = YAML(typ="safe", pure=pure)
        if not pure and "CParser" not in getattr(loader.Parser, "__name__", ""):
            raise ImportError("ruamel.yaml.clib (the C parser) is not installed")
        return loader.load

    return factory


def _strictyaml() -> Loads:
    import strictyaml

    def loads(text: str) -> Any:
        return strictyaml.dirty_load(text, allow_flow_style=True).data

    return loads


def _ryml() -> Loads:
    """rapidyaml only builds a tree; this walks it into Python objects with PyYAML's YAML 1.1 resolution
    (PyYAML's own implicit resolvers and SafeConstructor for plain scalars), so semantics match."""
    import ryml
    from yaml.constructor import SafeConstructor
    from yaml.nodes import ScalarNode
    from yaml.resolver import Resolver

    none = ryml.NONE
    resolvers = Resolver.yaml_implicit_resolvers
    wildcard = resolvers.get(None, [])
    constructor = SafeConstructor()
    build = SafeConstructor.yaml_constructors
    short = {"!!str": "str", "!!int": "int", "!!float": "float", "!!bool": "bool", "!!null": "null",
             "!!timestamp": "timestamp", "!!binary": "binary", "!!seq": "seq", "!!map": "map"}

    def resolve(value: str) -> Any:
        for tag, regexp in resolvers.get(value[:1], []) + wildcard:
            if regexp.match(value):
                make = build.get(tag)  # '<<' (merge) and '=' (value) have no constructor: stay text
                return make(constructor, ScalarNode(tag, value)) if make else value
        return value

    def tagged(tag: bytes, value: Any) -> Any:
        name = short.get(tag.decode())
        if name is None:
            raise ValueError(f"could not determine a constructor for the tag {tag.decode()!r}")
        if name in ("seq", "map", "str"):
            return value
        full = f"tag:yaml.org,2002:{name}"
        return build[full](constructor, ScalarNode(full, value if value is not None else ""))

    def scalar(tree: Any, n: int, key: bool) -> Any:
        raw = tree.key(n) if key else tree.val(n)
        value = bytes(raw).decode() if raw is not None else None
        if (tree.has_key_tag(n) if key else tree.has_val_tag(n)):
            return tagged(bytes(tree.key_tag(n) if key else tree.val_tag(n)), value)
        if value is None:
            return None
        if tree.is_key_quoted(n) if key else tree.is_val_quoted(n):
            return value
        return resolve(value)

    def node(tree: Any, n: int, anchors: dict) -> Any:
        if tree.is_val_ref(n):
            name = bytes(tree.val_ref(n)).decode()
            if name not in anchors:
                raise ValueError(f"found undefined alias {name!r}")
            return anchors[name]
        if tree.is_map(n):
            result: dict = {}
            merges: list = []
            c = tree.first_child(n)
            while c != none:
                k = anchors[bytes(tree.key_ref(c)).decode()] if tree.is_key_ref(c) else scalar(tree, c, True)
                v = node(tree, c, anchors)
                if k == "<<" and not tree.is_key_quoted(c):
                    merges.extend(reversed(v) if isinstance(v, list) else [v])
                else:
                    result[k] = v
                c = tree.next_sibling(c)
            if merges:
                merged: dict = {}
                for m in merges:
                    if not isinstance(m, dict):
                        raise ValueError("expected a mapping for merging")
                    merged.update(m)
                merged.update(result)
                result = merged
            value: Any = result
        elif tree.is_seq(n):
            items = []
            c = tree.first_child(n)
            while c != none:
                items.append(node(tree, c, anchors))
                c = tree.next_sibling(c)
            value = items
        else:
            return _anchored(tree, n, anchors, scalar(tree, n, False))
        if tree.has_val_tag(n):
            value = tagged(bytes(tree.val_tag(n)), value)
        return _anchored(tree, n, anchors, value)

    def _anchored(tree: Any, n: int, anchors: dict, value: Any) -> Any:
        if tree.has_val_anchor(n):
            anchors[bytes(tree.val_anchor(n)).decode()] = value
        return value

    def loads(text: str) -> Any:
        try:
            tree = ryml.parse_in_arena(text.encode())
        except ryml.ExceptionBasic as exc:
            loc = exc.errdata_parse.ymlloc if isinstance(exc, ryml.ExceptionParse) else None
            where = f" at line {loc.line}, column {loc.col}" if loc is not None else ""
            raise ValueError(f"rapidyaml {exc.msg}{where}") from None
        root = tree.root_id()
        if tree.is_stream(root):
            docs = []
            c = tree.first_child(root)
            while c != none:
                docs.append(c)
                c = tree.next_sibling(c)
            if len(docs) != 1:
                if not docs:
                    return None
                raise ValueError("expected a single document in the stream")
            root = docs[0]
        if not (tree.is_map(root) or tree.is_seq(root) or tree.has_val(root)):
            return None
        return node(tree, root, {})

    return loads


@dataclass
class Candidate:
    name: str
    dist: str  # PyPI distribution, for the installed version
    factory: Callable[[], Loads]
    note: str  # YAML semantics as measured by the probes below, and how it is configured here
    released: str = ""  # last PyPI release seen (month), taken from the package index on 2026-11-26


CANDIDATES = [
    Candidate("pyyaml-c", "PyYAML", lambda: _pyyaml("CSafeLoader"),
              "baseline: libyaml + YAML 1.1 resolvers; what content.load_yaml uses", "2025-09 (6.0.3)"),
    Candidate("pyyaml-pure", "PyYAML", lambda: _pyyaml("SafeLoader"), "same semantics, pure Python", ""),
    Candidate("rapidyaml", "rapidyaml", _ryml,
              "C++ tree + Python walk here with PyYAML's 1.1 resolvers", "2026-06"),
    Candidate("yaml-rs", "yaml-rs", _yaml_rs(False),
              "Rust saphyr, YAML 1.2; here: alias budget 20k, last dup key wins, parse_datetime=False", "2026-07"),
    Candidate("yaml-rs-dt", "yaml-rs", _yaml_rs(True), "as yaml-rs with parse_datetime=True", "2026-07"),
    Candidate("yaml-rs-default", "yaml-rs", _yaml_rs_default, "library defaults (parse_datetime=True)", "2026-07"),
    Candidate("fastyaml-rs", "fastyaml-rs", _attr("fast_yaml", "safe_load"), "Rust, YAML 1.2 core", "2026-10"),
    Candidate("pyyaml-rs", "pyyaml-rs", _attr("pyyaml_rs", "safe_load"), "Rust yaml-rust based", "2026-01"),
    Candidate("oryaml", "oryaml", _attr("oryaml", "loads"), "Rust, YAML 1.2 core", "2026-10"),
    Candidate("rustyyaml", "rustyyaml", _attr("rustyyaml", "safe_load"), "Rust, YAML 1.2 core", "2026-02"),
    Candidate("ryaml", "ryaml", _attr("ryaml", "loads"), "Rust yaml-rust based", "2026-02"),
    Candidate("xoryaml", "xoryaml", _attr("xoryaml", "loads"), "Rust yaml_rust2", "2025-03"),
    Candidate("py-yaml12", "py-yaml12", _attr("yaml12", "parse_yaml"), "Rust saphyr, YAML 1.2", "2026-08"),
    Candidate("pyrs-yaml", "pyrs-yaml", _attr("pyrs_yaml", "safe_load"), "Rust, round-trip library", "2026-10"),
    Candidate("turboyaml", "rs-turboyaml", _turboyaml, "Rust YAML 1.2 subset, 1.1 bools on", "2026-07"),
    Candidate("pyfastyaml", "pyfastyaml", _attr("pyfastyaml", "loads"), "C++ (sdist only, built here)", "2026-03"),
    Candidate("ruamel-c", "ruamel.yaml", _ruamel(False), "libyaml-derived C parser + Python constructor, 1.2",
              "2026-01 (0.19.1); clib 2025-11"),
    Candidate("ruamel-pure", "ruamel.yaml", _ruamel(True), "pure Python, YAML 1.2", "2026-01"),
    Candidate("saneyaml", "saneyaml", _attr("saneyaml", "load"), "PyYAML wrapper, scalars stay text", "2024-08"),
    Candidate("strictyaml", "strictyaml", _strictyaml, "ruamel fork, everything text, no schema", "2023-03"),
]
# Looked for but not measurable here: yamlrocks (needs Python >= 3.12 for any release past 0.0.1), and
# ruamel.yaml.clibz (sdist only, builds with Zig); ruamel-c uses ruamel.yaml.clib ("oldlibyaml" extra).


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ----------------------------------------------------------------------------- corpus


@dataclass
class File:
    path: str
    raw: bytes
    case: str  # "" for a normal item, else the gen_corpus BAD_CASES name
    front: str | None = None  # front matter text when read_item would hand it to load_yaml
    body: str = ""


def ensure_corpus(args: argparse.Namespace) -> Path:
    if args.corpus:
        return Path(args.corpus)
    bad = f"-bad{round(args.bad * 100)}" if args.bad else ""
    out = WORK / f"yaml-corpus-{args.items}-{args.topics}{bad}"
    news = out / "news"
    if news.is_dir() and sum(1 for _ in news.iterdir()) == args.items:
        return out
    print(f"generating {out.relative_to(ROOT)} ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_corpus.py"), "--out", str(out),
                    "--items", str(args.items), "--topics", str(args.topics), "--bad", str(args.bad)],
                   check=True)
    return out


def load_corpus(root: Path) -> tuple[list[File], list[File]]:
    items, topics = [], []
    for path in sorted((root / "news").iterdir()):
        match = re.match(r"bad-(.+)-\d+\.md$", path.name)
        f = File(f"news/{path.name}", path.read_bytes(), match.group(1) if match else "")
        if len(f.raw) <= 1_048_576:  # read_item's default max_bytes: bigger files never reach YAML
            try:
                f.front, f.body = content.split_front_matter(content.decode(f.raw))
            except Invalid:
                pass
        items.append(f)
    for path in sorted((root / "topics").iterdir()):
        topics.append(File(f"topics/{path.name}", path.read_bytes(), ""))
    return items, topics


# ----------------------------------------------------------------------------- equivalence


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """rapidyaml prints every parse error to fd 2; keep it out of the report."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def patched(name: str, value: Any) -> Iterator[None]:
    original = getattr(content, name)
    setattr(content, name, value)
    try:
        yield
    finally:
        setattr(content, name, original)


@dataclass
class Check:
    """How one candidate's pipeline output compares with the stock pipeline's, file by file."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cases: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # hostile case -> outcomes
    case_ms: dict[str, float] = field(default_factory=dict)  # hostile case -> slowest parse (ms)
    pathological: dict[str, float] = field(default_factory=dict)  # front text -> seconds for one parse
    topics: Counter = field(default_factory=Counter)
    files: int = 0
    sampled: bool = False


def candidate_load_yaml(loads: Loads, check: Check, timings: dict[str, float]) -> Callable[[str], Any]:
    """content.load_yaml with the candidate's parser: same error wrapping (generic) and same _check_shape."""
    cache: dict[str, tuple[bool, Any]] = {}

    def load_yaml(text: str) -> Any:
        if text in cache:
            ok, value = cache[text]
            if ok:
                return value
            raise Invalid(value)
        start = CLOCK()
        try:
            try:
                data = loads(text)
            except RecursionError:
                raise Invalid(f"front matter is nested deeper than {content.MAX_DEPTH} levels") from None
            except Exception as exc:  # every parser has its own error classes
                raise Invalid(error_reason(exc)) from None
            finally:
                timings[text] = elapsed = CLOCK() - start
            content._check_shape(data)
        except Invalid as exc:
            if elapsed > SLOW_PARSE_S:
                cache[text] = (False, str(exc))
                check.pathological[text] = elapsed
            raise
        if elapsed > SLOW_PARSE_S:
            cache[text] = (True, data)
            check.pathological[text] = elapsed
        return data

    return load_yaml


def error_reason(exc: Exception) -> str:
    """content.load_yaml's wording for errors that carry PyYAML-style marks (PyYAML, ruamel, saneyaml);
    the first line of the message for the others."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem is not None or mark is not None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = problem or "syntax error"
        if "constructor" in problem:
            problem = f"{problem} (only plain YAML is allowed)"
        return f"invalid YAML{where}: {problem}"
    lines = str(exc).strip().splitlines()
    return f"invalid YAML: {lines[0] if lines else type(exc).__name__}"


def item_diff(a: Item, b: Item) -> str:
    parts = []
    for name in Item._fields:
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            parts.append(f"{name}: pyyaml={_short(x)} candidate={_short(y)}")
    return "; ".join(parts)


def _short(value: Any, limit: int = 110) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare(check: Check, f: File, base: Item | Problem, got: Item | Problem | BaseException, ms: float) -> None:
    if isinstance(got, BaseException):
        kind, note = "crash", f"{f.path}: {type(got).__name__}: {got}"
    elif isinstance(base, Item) and isinstance(got, Item):
        kind, note = ("item_same", "") if base == got else ("item_diff", f"{f.path}: {item_diff(base, got)}")
    elif isinstance(base, Problem) and isinstance(got, Problem):
        same = base.reason == got.reason
        kind = "problem_same" if same else "problem_reason"
        note = "" if same else f"{f.path}: pyyaml={base.reason!r} candidate={got.reason!r}"
    elif isinstance(base, Item):
        kind, note = "item_to_problem", f"{f.path}: pyyaml=Item candidate={got.reason!r}"
    else:
        kind, note = "problem_to_item", f"{f.path}: pyyaml={base.reason!r} candidate=Item"
    check.counts[kind] += 1
    if note and len(check.examples[kind]) < 3:
        check.examples[kind].append(_short(note, 600))
    if f.case:
        verdict = {"item_same": "same", "problem_same": "same", "problem_reason": "problem (other reason)",
                   "item_to_problem": "PROBLEM (pyyaml: item)", "problem_to_item": "ITEM (pyyaml: problem)",
                   "item_diff": "item differs", "crash": "CRASH"}[kind]
        check.cases[f.case][verdict] += 1
        check.case_ms[f.case] = max(check.case_ms.get(f.case, 0.0), ms)


def run_check(loads: Loads, files: list[File], topics: list[File], base: dict[str, Any], sample: int) -> Check:
    check = Check()
    timings: dict[str, float] = {}
    wrapped = candidate_load_yaml(loads, check, timings)
    if sample and len(files) > sample:
        stride = math.ceil(len(files) / sample)
        files = files[::stride]
        check.sampled = True
    check.files = len(files)
    with patched("load_yaml", wrapped):
        for f in files:
            timings.clear()
            try:
                got: Any = content.read_item(f.raw, f.path)
            except Exception as exc:  # a candidate's data type the field checks never expected
                got = exc
            compare(check, f, base[f.path], got, sum(timings.values()) * 1000)
        for f in topics:
            try:
                got = content.read_topic(f.raw, f.path)
            except Exception as exc:
                got = exc
            check.topics["same" if got == base[f.path] else "different"] += 1
    return check


# ----------------------------------------------------------------------------- timing


def _cpu(loads: Loads, texts: list[str]) -> tuple[float, int]:
    gc.collect()
    errors = 0
    start = CLOCK()
    for text in texts:
        try:
            loads(text)
        except Exception:
            errors += 1
    return CLOCK() - start, errors


def time_paired(base: Loads, cand: Loads, texts: list[str], repeats: int, chunk: int = 500
                ) -> tuple[float, float, int]:
    """CPU seconds of the baseline and of the candidate on the same texts, chunk by chunk and alternating,
    keeping each chunk's best pass, so load from other processes hits both alike. Also: texts that raised."""
    base_total = cand_total = 0.0
    errors = 0
    for i in range(0, len(texts), chunk):
        part = texts[i: i + chunk]
        b = c = math.inf
        for _ in range(repeats):
            b = min(b, _cpu(base, part)[0]) if cand is not base else 0.0
            seconds, errs = _cpu(cand, part)
            c = min(c, seconds)
        base_total += b if cand is not base else c
        cand_total += c
        errors += errs
    return base_total, cand_total, errors


def stage_times(files: list[File], count: int, repeats: int) -> dict[str, float]:
    """µs per file of each stage of read_item with PyYAML (CPU time, best of `repeats`), each stage timed in
    its own loop over a stride sample of `count` files."""
    files = files[:: max(1, len(files) // count)][:count]
    best: dict[str, float] = {}
    for _ in range(repeats):
        for key, value in _stage_pass(files).items():
            best[key] = min(best.get(key, math.inf), value)
    return best


def _stage_pass(files: list[File]) -> dict[str, float]:
    """One read_item loop for the total, then one loop that clocks each stage of each file in turn, so every
    stage sees the same machine (separate loops per stage drift apart when other work comes and goes)."""
    n = len(files)
    gc.collect()
    start = CLOCK()
    for f in files:
        content.read_item(f.raw, f.path)
    out = {"read_item total (own loop)": (CLOCK() - start) / n * 1e6}
    acc = dict.fromkeys(STAGES, 0.0)
    render = content.render_body
    html = [""]
    gc.collect()
    with patched("render_body", lambda body: html[0]):
        for f in files:
            t0 = CLOCK()
            try:
                if len(f.raw) > 1_048_576:
                    raise Invalid("too big")
                front, body = content.split_front_matter(content.decode(f.raw))
            except Invalid:
                acc[STAGES[0]] += CLOCK() - t0
                continue
            t1 = CLOCK()
            acc[STAGES[0]] += t1 - t0
            try:
                data = yaml.load(front, Loader=content.SafeLoader)  # noqa: S506
            except Exception:
                acc[STAGES[1]] += CLOCK() - t1
                continue
            t2 = CLOCK()
            acc[STAGES[1]] += t2 - t1
            try:
                content._check_shape(data)
            except Invalid:
                acc[STAGES[2]] += CLOCK() - t2
                continue
            t3 = CLOCK()
            acc[STAGES[2]] += t3 - t2
            html[0] = render(body)
            t4 = CLOCK()
            acc[STAGES[3]] += t4 - t3
            with contextlib.suppress(Invalid):
                content.item_from_data(data, body, f.path)
            acc[STAGES[4]] += CLOCK() - t4
    out.update({k: v / n * 1e6 for k, v in acc.items()})
    return out


STAGES = ("decode + split_front_matter", "yaml.load (CSafeLoader)", "_check_shape", "render_body (Markdown + nh3)",
          "item_from_data without render_body")


def profile(files: list[File], count: int) -> tuple[str, dict[str, float]]:
    stride = max(1, len(files) // count)
    sample = files[::stride][:count]
    prof = cProfile.Profile()
    prof.enable()
    for f in sample:
        content.read_item(f.raw, f.path)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(15)
    total = stats.total_tt  # type: ignore[attr-defined]
    shares: dict[str, float] = {}
    wanted = {"load_yaml": "content.py", "render_body": "content.py", "item_from_data": "content.py",
              "_check_shape": "content.py", "decode": "content.py", "split_front_matter": "content.py",
              "item_id": "content.py", "load": "yaml/__init__.py", "markdown": "markdown/core.py"}
    for (filename, _, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func in wanted and filename.endswith(wanted[func]):
            label = f"{func} ({wanted[func]})"
            shares[label] = shares.get(label, 0.0) + cum / total * 100
        if func == "<built-in method nh3.clean>" or (func == "clean" and "nh3" in filename):
            shares["nh3.clean"] = shares.get("nh3.clean", 0.0) + cum / total * 100
    text = buf.getvalue()
    text = text[text.find("   ncalls"):].rstrip() if "   ncalls" in text else text
    return f"{len(sample)} files, {total:.2f} s profiled\n{text}", shares


# ----------------------------------------------------------------------------- semantics probes

PROBES = {
    "2020-05-19T21:00:00Z": "t: 2020-05-19T21:00:00Z\n",
    "yes / on": "v: [yes, on]\n",
    "010": "v: 010\n",
    "1_000": "v: 1_000\n",
    "1e3": "v: 1e3\n",
    "!!python tag": "v: !!python/object/apply:os.system ['true']\n",
    "dup key": "a: 1\na: 2\n",
    "<< merge": "x: &x {a: 1}\ny: {<<: *x}\n",
    "12:30": "v: 12:30\n",
    "'2020-05-19' quoted": "v: '2020-05-19'\n",
    "2020-05-19 21:00:00": "t: 2020-05-19 21:00:00\n",
}


def probe(loads: Loads) -> dict[str, str]:
    out = {}
    for label, text in PROBES.items():
        try:
            data = loads(text)
            value = data.get("v", data.get("t", data)) if isinstance(data, dict) else data
            if label == "dup key" and isinstance(data, dict):
                value = data.get("a")
            if label == "<< merge" and isinstance(data, dict):
                value = "merged" if isinstance(data.get("y"), dict) and "a" in data["y"] else "not merged"
            if label == "!!python tag":
                value = f"accepted {value!r}"
            out[label] = type(value).__name__ if isinstance(value, dt.date) else repr(value)
        except Exception as exc:
            out[label] = f"error ({type(exc).__name__})"
    return out


# ----------------------------------------------------------------------------- fuzz

PIECES = ("cloud", "Azure", "release", "preview", "GPU", "yes", "No", "on", "OFF", "y", "010", "0o17", "0x1F",
          "1e3", "1_000", "12:30", "3.0", ".inf", "~", "null", "true", "2020-05-19", "-", "- x", "a: b", "#tag",
          "x #y", "it's", '"q"', "[x]", "{y}", "&a", "*b", "!c", "%d", "@e", "`f`", "|", ">", "?", "é", "東京",
          "🚀", "AT&T", "50%", "C#", "R&D ]]>", "back\\slash", "tab\there", " lead", "trail ")
TIMES = ("2020-05-19T21:00:00Z", "2020-05-19 21:00:00", "2020-05-19", "2020-05-19T21:00:00+02:00",
         "2020-05-19T21:00:00.123Z", "2020-05-19t21:00:00z", "2020-5-9 1:00:00")
STYLES = ("pyyaml-block", "pyyaml-narrow", "pyyaml-ascii", "pyyaml-flow", "hand", "hand-blocks")


def fuzz_files(n: int, seed: int) -> list[File]:
    """Front matters as people and tools write them, weighted towards scalars YAML 1.1 and 1.2 read apart."""
    import random

    rng = random.Random(seed)

    def text(lo: int = 1, hi: int = 6) -> str:
        if rng.random() < 0.3:
            return rng.choice(PIECES)
        return " ".join(rng.choice(PIECES) for _ in range(rng.randint(lo, hi)))

    def when() -> Any:
        choice = rng.choice(TIMES)
        if rng.random() < 0.3:  # a real datetime: PyYAML dumps it bare
            return dt.datetime(2020, 5, 19, 21, tzinfo=dt.timezone.utc)
        return choice

    files = []
    for i in range(n):
        style = STYLES[i % len(STYLES)]
        data: dict[str, Any] = {"title": text(), "excerpt": text(5, 40),
                                "webUrl": f"https://news.example.org/{i}/{rng.choice(PIECES[:5])}",
                                "publishedDateTime": when(),
                                "published": rng.choices([True, False, "yes", "on"], [16, 2, 1, 1])[0],
                                "topics": [text(1, 3) for _ in range(rng.randint(1, 3))],
                                "provider": {"name": text(1, 2), "domain": "example.org"},
                                "images": [{"url": f"https://img.example.org/{i}.jpg",
                                            "width": rng.choice([480, "480"]), "title": text(1, 4)}]}
        if rng.random() < 0.2:
            data["id"] = rng.choice(["010", "1e3", "0x1F", "abc", "12:30", "1_000"])
        if style.startswith("pyyaml"):
            front = yaml.safe_dump(data, sort_keys=False, allow_unicode=style != "pyyaml-ascii",
                                   width=40 if style == "pyyaml-narrow" else 1000,
                                   default_flow_style=True if style == "pyyaml-flow" else False)
        else:
            front = _hand(data, blocks=style == "hand-blocks")
        raw = f"---\n{front}---\nBody text.\n".encode()
        files.append(File(f"fuzz/{style}-{i}.md", raw, ""))
    return files


_PLAIN_UNSAFE = re.compile(r"^[-?:,\[\]{}#&*!|>'\"%@`\s]|: |\s#|[\t]|\s$|:$")


def _scalar(value: Any) -> str:
    """How a person writes a value: bare when YAML would let them, else in double quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    value = str(value)
    if value and not _PLAIN_UNSAFE.search(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _hand(data: dict, blocks: bool) -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            for entry in value:
                if isinstance(entry, dict):
                    first = True
                    for k, v in entry.items():
                        lines.append(f"{'- ' if first else '  '}{k}: {_scalar(v)}")
                        first = False
                else:
                    lines.append(f"- {_scalar(entry)}")
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {_scalar(v)}" for k, v in value.items()]
        elif blocks and key == "excerpt":
            words = str(value).split(" ")
            folded = "\n".join("  " + " ".join(words[j: j + 6]) for j in range(0, len(words), 6))
            lines.append(f"{key}: >-\n{folded}")
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- report


def _fuzz_cell(r: dict) -> str:
    c, n = r["fuzz"], r["fuzz_files"]
    if not n:
        return "-"
    verdict = n - c.get("item_to_problem", 0) - c.get("problem_to_item", 0) - c.get("crash", 0)
    same = c.get("item_same", 0) + c.get("problem_same", 0)
    return f"{100 * verdict / n:.1f} % / {100 * same / n:.1f} %" + (f" (of {n})" if r["sampled"] else "")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--bad", type=float, default=0.05, help="hostile share passed to gen_corpus.py --bad")
    ap.add_argument("--corpus", help="use this existing corpus directory instead of generating one")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes per parser (best is kept)")
    ap.add_argument("--only", help="comma-separated candidate names (default: all that import)")
    ap.add_argument("--slow-sample", type=int, default=3000,
                    help=f"files used for parsers slower than {SLOW_PARSER_US:.0f} µs/item (0: all)")
    ap.add_argument("--profile-files", type=int, default=2000)
    ap.add_argument("--stage-files", type=int, default=5000, help="files for the per-stage read_item timing")
    ap.add_argument("--fuzz", type=int, default=3000,
                    help="extra generated front matters written in several styles with tricky scalars (0: none)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=-1, help="core to pin to (default: the highest-numbered)")
    ap.add_argument("--json", help="write results here (default bench/work/yaml_parsers-<items>.json)")
    args = ap.parse_args()

    wall0 = time.perf_counter()
    with contextlib.suppress(AttributeError, OSError):  # one core, whatever else runs here
        os.sched_setaffinity(0, {args.cpu if args.cpu >= 0 else max(os.sched_getaffinity(0))})
    corpus = ensure_corpus(args)
    files, topics = load_corpus(corpus)
    good = [f.front for f in files if not f.case and f.front is not None]
    hostile = [f for f in files if f.case]
    shown = corpus.resolve().relative_to(ROOT) if corpus.resolve().is_relative_to(ROOT) else corpus
    print(f"# YAML parsers vs PyYAML CSafeLoader\n\ncorpus {shown}"
          f": {len(files)} item files ({len(hostile)} hostile, {sum(f.front is not None for f in files)} reach YAML),"
          f" {len(topics)} topic files; Python {platform.python_version()} {platform.machine()},"
          f" PyYAML {yaml.__version__} with libyaml {yaml.__with_libyaml__}, {dt.date.today()}\n", flush=True)

    # Baseline: the stock pipeline, timed per stage, and its results to compare against.
    base: dict[str, Any] = {f.path: content.read_item(f.raw, f.path) for f in files}
    base.update({f.path: content.read_topic(f.raw, f.path) for f in topics})
    stages = stage_times(files, args.stage_files, args.repeats)
    profile_text, shares = profile(files, args.profile_files)

    fuzz = fuzz_files(args.fuzz, args.seed) if args.fuzz else []
    base.update({f.path: content.read_item(f.raw, f.path) for f in fuzz})
    baseline = CANDIDATES[0].factory()
    wanted = set(args.only.split(",")) if args.only else None
    results, skipped = [], []
    log = WORK / "yaml_parsers-stderr.log"
    WORK.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    html_cache: dict[str, str] = {}
    render = content.render_body

    def cached_render(body: str) -> str:  # the body never depends on the YAML parser
        if body not in html_cache:
            html_cache[body] = render(body)
        return html_cache[body]

    for cand in CANDIDATES:
        if wanted is not None and cand.name not in wanted:
            continue
        try:
            loads = cand.factory()
        except ImportError as exc:
            skipped.append(f"{cand.name} ({cand.dist}): not importable: {exc}")
            continue
        if cand.name == "pyyaml-c":
            loads = baseline
        t0 = time.perf_counter()
        with stderr_to(log), patched("render_body", cached_render):
            slow = _cpu(loads, good[:200])[0] / max(1, len(good[:200])) * 1e6 > SLOW_PARSER_US
            sample = args.slow_sample if slow else 0
            check = run_check(loads, files, topics, base, sample)
            fuzzed = run_check(loads, fuzz, [], base, sample // 5)
            texts = good[:: math.ceil(len(good) / sample)] if sample and len(good) > sample else good
            texts = [t for t in texts if t not in check.pathological]
            base_s, seconds, errors = time_paired(baseline, loads, texts, 1 if slow else args.repeats)
            semantics = probe(loads)
        results.append({
            "name": cand.name, "dist": cand.dist, "version": version_of(cand.dist), "released": cand.released,
            "note": cand.note, "us_per_item": seconds / len(texts) * 1e6, "timed": len(texts),
            "baseline_us_per_item": base_s / len(texts) * 1e6, "speedup": base_s / seconds,
            "fuzz": dict(fuzzed.counts), "fuzz_files": fuzzed.files, "fuzz_examples": dict(fuzzed.examples),
            "parse_errors_on_good": errors, "counts": dict(check.counts), "examples": dict(check.examples),
            "cases": {k: dict(v) for k, v in check.cases.items()}, "case_ms": check.case_ms,
            "pathological_s": sorted(check.pathological.values(), reverse=True)[:3],
            "topics": dict(check.topics), "files_checked": check.files, "sampled": check.sampled,
            "semantics": semantics, "wall_s": time.perf_counter() - t0,
        })
        print(f"  {cand.name}: {results[-1]['us_per_item']:.1f} µs/item, {dict(check.counts)}"
              f" ({results[-1]['wall_s']:.0f} s)", flush=True)

    report(results, skipped, stages, profile_text, shares)
    wall = time.perf_counter() - wall0
    print(f"\nwall time {wall:.0f} s; parser error output (rapidyaml prints to stderr) in {log.relative_to(ROOT)}")
    out = Path(args.json) if args.json else WORK / f"yaml_parsers-{args.items}.json"
    out.write_text(json.dumps({"corpus": str(corpus), "files": len(files), "wall_s": wall, "stages_us": stages,
                               "profile_shares_pct": shares, "results": results, "skipped": skipped},
                              indent=1, default=str))


def report(results: list[dict], skipped: list[str], stages: dict[str, float], profile_text: str,
           shares: dict[str, float]) -> None:
    rows = []
    for r in results:
        c = r["counts"]
        items = c.get("item_same", 0) + c.get("item_diff", 0) + c.get("item_to_problem", 0)
        problems = c.get("problem_same", 0) + c.get("problem_reason", 0) + c.get("problem_to_item", 0)
        verdict = ("same" if c.get("problem_to_item", 0) == 0 else f"{c['problem_to_item']} became items")
        reason = f"{c.get('problem_same', 0)}/{problems}"
        rows.append([
            r["name"], r["version"], r["released"], f"{r['us_per_item']:.1f}" + (" (sample)" if r["sampled"] else ""),
            f"{r['speedup']:.2f}x",
            f"{100 * c.get('item_same', 0) / items:.2f}" if items else "-",
            verdict, reason, c.get("crash", 0), "same" if not r["topics"].get("different") else "DIFFERENT",
            _fuzz_cell(r),
        ])
    print("\n## Parse speed and end-to-end equivalence\n")
    print("µs/item: CPU time to parse the front matter of every well-formed item (no hostile files), best of "
          "the passes, one core; speed vs C: paired with CSafeLoader chunk by chunk. Identical items: share of "
          "PyYAML's Items the candidate pipeline reproduces exactly. Problems: 'same' = every file PyYAML refuses "
          "is refused; reasons identical = same text. Fuzz: generated front matters in several writing styles "
          "with tricky scalars (YAML 1.1 vs 1.2 corners), share with the same Item/Problem verdict and share of "
          "exactly equal outcomes.\n")
    print(table(["parser", "version", "last release", "µs/item", "speed vs C", "identical items %",
                 "problems", "reasons identical", "crashes", "topics", "fuzz: same verdict / same item"], rows))

    print("\n## Hostile files (gen_corpus --bad), per case: outcome vs PyYAML; slowest single parse\n")
    cases = sorted({case for r in results for case in r["cases"]})
    rows = []
    for r in results:
        row = [r["name"]]
        for case in cases:
            outcome = r["cases"].get(case, {})
            text = ", ".join(f"{k} {v}" if len(outcome) > 1 else k for k, v in outcome.items()) or "-"
            ms = r["case_ms"].get(case, 0.0)
            row.append(f"{text} ({ms:.1f} ms)" if case in ("alias-bomb", "broken-yaml", "python-tag") else text)
        rows.append(row)
    print(table(["parser"] + cases, rows))

    print("\n## Differences (up to 3 examples per kind)\n")
    for r in results:
        for kind, notes in r["examples"].items():
            if kind == "problem_reason" and r["name"] != "yaml-rs":
                notes = notes[:1]
            for note in notes:
                print(f"- {r['name']} {kind}: {note}")

    print("\n## Fuzz differences (up to 3 examples per kind)\n")
    for r in results:
        for kind, notes in r["fuzz_examples"].items():
            for note in notes[: 3 if r["name"] in ("yaml-rs", "rapidyaml", "turboyaml", "ruamel-c") else 1]:
                print(f"- {r['name']} {kind}: {note}")

    print("\n## YAML semantics probes\n")
    labels = list(PROBES)
    print(table(["parser"] + labels, [[r["name"]] + [r["semantics"][k] for k in labels] for r in results]))
    print("\n## Notes\n")
    for r in results:
        print(f"- {r['name']} {r['version']}: {r['note']}; checked {r['files_checked']} files; "
              f"{r['parse_errors_on_good']} parse errors on good items; pathological parses (s): "
              f"{[round(s, 2) for s in r['pathological_s']]}")
    for s in skipped:
        print(f"- skipped {s}")

    print("\n## read_item with PyYAML, per stage (CPU µs per file over a stride sample of all files incl. "
          "hostile ones, each stage clocked file by file, best of the passes)\n")
    staged = sum(stages[k] for k in STAGES)
    print(table(["stage", "µs/file", "share"], [[k, f"{v:.1f}", f"{100 * v / staged:.0f} %" if k in STAGES else ""]
                                                for k, v in stages.items()]))
    yaml_share = (stages[STAGES[1]] + stages[STAGES[2]]) / staged
    print(f"\nYAML (load_yaml = yaml.load + _check_shape) is {100 * yaml_share:.0f} % of read_item's staged time.")
    print("\n## cProfile of read_item (top 15 by own time)\n")
    print("```\n" + profile_text + "\n```")
    print("\ncumulative share of profiled time: " + ", ".join(f"{k} {v:.0f} %" for k, v in
                                                            sorted(shares.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
