"""Files to parse results: bounded reads, and parsing many files on every core."""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass

from .listing import ParseResult
from .model import Problem
from .reader import read_item, read_topic

log = logging.getLogger(__name__)
PARALLEL_THRESHOLD = 400  # below this many files to parse, starting processes costs more than it saves
READ_CHUNK = 65_536
#: What a parse process is told besides its files: (root, site_url, max_bytes, pid of the process that
#: keeps its own results and ships only pickles, or None when nothing is pickled).
ParseOptions = tuple[str, str, int, "int | None"]


def parse_file(root: str, rel: str, site_url: str, max_bytes: int) -> ParseResult:
    """Read and parse one file: Item, TopicDef, Problem, or None (a YAML file that is not a topic)."""
    try:
        raw = read_bounded(os.path.join(root, rel), max_bytes)
        if isinstance(raw, int):
            return Problem(rel, f"file is {raw:,} bytes, over the {max_bytes:,}-byte limit (max_file_bytes)")
    except OSError as exc:
        return Problem(rel, f"cannot read file: {exc.strerror or exc}", transient=True)
    try:
        if rel.endswith(".md"):
            return read_item(raw, rel, site_url=site_url, max_bytes=max_bytes)
        return read_topic(raw, rel, site_url=site_url)
    except Exception as exc:  # a reader bug must not take the scan down; report it like bad input
        log.exception("unexpected error reading %s", rel)
        return Problem(rel, f"internal error while reading: {type(exc).__name__}: {exc}")


def read_bounded(path: str, limit: int) -> bytes | int:
    """The file's bytes, or its size when that is over `limit` (only `limit` + 1 bytes are ever read).

    Read in 64 KB pieces: `f.read(limit + 1)` would allocate the whole megabyte up front for every
    file, which costs more than reading a typical 2 KB item."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            return os.fstat(fd).st_size
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse_chunk(options: ParseOptions, rels: list[str]) -> tuple[list[ParseResult] | None, bytes | None]:
    """Parse `rels`: (results, None), or with a `packer` pid, (results or None, the results pickled).

    The pickle is both what crosses the pipe from a forked parser (results come back as None there) and
    a part of the parse cache as it will be written, so a cold start does not pickle 100k items twice.
    The packer pickles its own chunks here too, while the other processes parse, rather than in the
    cache write, which one core does alone before the server forks its workers."""
    root, site_url, max_bytes, packer = options
    results = [parse_file(root, rel, site_url, max_bytes) for rel in rels]
    if packer is None:
        return results, None
    blob = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    return (results if os.getpid() == packer else None), blob


@dataclass(frozen=True)
class Parsed:
    """parse_many's answer: a result per file, and when asked for, the same results pickled by chunk as
    (first index, end index, pickle)."""

    results: list[ParseResult]
    parts: list[tuple[int, int, bytes]] | None = None


def parse_many(root: str, rels: list[str], site_url: str, max_bytes: int, workers: int,
               pack: bool = False) -> Parsed:
    """Parse files, in `workers` processes when there are enough of them to pay for the processes.

    YAML parsing is CPU-bound and holds the GIL, so threads would not help; processes use every core.
    With `pack` (a parse cache will be written), each chunk's results also come pickled.
    """
    if workers <= 1 or len(rels) < PARALLEL_THRESHOLD:
        return Parsed([parse_file(root, rel, site_url, max_bytes) for rel in rels])
    from .parallel import fork_imap

    # Chunks shrink as the work runs out (each a sixteenth of what is left per process, at least 50
    # files): the last ones are small, so no process idles long waiting for another's last chunk, and
    # there are few chunks in all (~160 for 100k files), each one pickle round trip.
    chunks = []
    start = 0
    while start < len(rels):
        size = max(50, (len(rels) - start) // (workers * 16))
        chunks.append(rels[start:start + size])
        start += size
    options = (root, site_url, max_bytes, os.getpid() if pack else None)
    parsed = Parsed([], [] if pack else None)
    for results, blob in fork_imap(_parse_chunk, chunks, options, workers):
        if results is None:
            assert blob is not None, "a forked parser sends its results pickled"
            results = pickle.loads(blob)
        if parsed.parts is not None and blob is not None:
            parsed.parts.append((len(parsed.results), len(parsed.results) + len(results), blob))
        parsed.results.extend(results)
    return parsed

