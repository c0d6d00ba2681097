"""Test helpers: generated content trees, feed parsing, files on disk, and `syndicator serve` (or any server)
as a real process over real HTTP. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "tools" / "gen_corpus.py"
SYNDICATOR = [sys.executable, "-m", "syndicator.cli"]
SEED = ROOT / "content" / "news" / "2020-05-19-microsoft-builds-massive-supercomputer-for-smarter-ai.md"


def generate(out: Path, items: int = 40, topics: int = 6, bad: float = 0.0, seed: int = 73) -> Path:
    """A deterministic realistic content tree (tools/gen_corpus.py)."""
    subprocess.run([sys.executable, str(GEN), "--out", str(out), "--items", str(items), "--topics",
                    str(topics), "--bad", str(bad), "--seed", str(seed)], check=True, capture_output=True)
    return out


def parse(body: bytes):
    """Parse with feedparser and insist it found nothing wrong."""
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, getattr(parsed, "bozo_exception", None)
    return parsed


def write_item(directory: Path, name: str, **fields) -> Path:
    """Write one item file with YAML front matter from keyword fields."""
    import yaml

    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    body = fields.pop("body", "")
    path.write_text("---\n" + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True) + "---\n" + body,
                    encoding="utf-8")
    return path


def bump_mtime(path: Path, seconds: int = 5) -> None:
    """Make a rewrite visible to (mtime, size) change detection even within one clock tick."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `url` until it answers 200. Fails at once, with the log, if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} came up"
                                 + (f"; its output:\n{log.read_text(errors='replace')}" if log else ""))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up within {timeout} s"
                         + (f"; output so far:\n{log.read_text(errors='replace')}" if log else ""))


@contextmanager
def serve(content: Path, *args: str, env_extra: dict | None = None, log: Path | None = None):
    """`syndicator serve` as a real process (gunicorn); yields its base URL.

    Its stdout and stderr (gunicorn's access log among them) go to the file `log`, or to a scratch file:
    a pipe nobody reads would fill up and block the server.
    """
    port = free_port()
    env = {**os.environ, "SYNDICATOR_PORT": str(port), **(env_extra or {})}
    base = f"http://127.0.0.1:{port}"
    with ExitStack() as scratch:
        if log is None:
            log = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="syndicator-serve-"))) / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*SYNDICATOR, "serve", "--content", str(content), *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_http(base + "/healthz", proc=proc, log=log)
            yield base
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (a graceful shutdown for gunicorn, granian and nginx), then SIGKILL if it takes over 45 s:
    longer than the servers' own 30 s for workers to finish, so that their main process, not this
    helper, ends the workers (killing it first would leave them running)."""
    proc.terminate()
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_get(url: str, headers: dict | None = None) -> tuple[int, Message, bytes]:
    """GET without raising on 304 or 4xx/5xx: status, headers (looked up in any case: granian sends them
    in lower case) and body (gunzipped when it came gzipped)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, head, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, body = exc.code, exc.headers, exc.read()
    if head.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return status, head, body


def steadily(check: Callable[[], Any], times: int = 8) -> tuple[bool, Any]:
    """`check` holds on several requests in a row: with two workers, both have caught up (each worker
    rescans on its own and may be one interval behind the other). Returns (ok, last detail)."""
    detail = None
    for _ in range(times):
        result = check()
        ok, detail = result if isinstance(result, tuple) else (result, detail)
        if not ok:
            return False, detail
    return True, detail


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds.

    `check` may return an (ok, detail) pair: the detail of the last call goes into the failure message,
    and poll returns the detail of the successful one.
    """
    deadline = time.monotonic() + timeout
    detail: Any = None
    while True:
        result = check()
        if isinstance(result, tuple) and len(result) == 2:
            result, detail = result
        if result:
            return detail if detail is not None else result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s; last seen: {detail!r}")
        time.sleep(interval)


def served_files(content: Path) -> int:
    """How many of a generated corpus's item files are served: all but those it withholds on purpose
    (`published: false`, `removed: true`, `deleted: true`), counted from the files' own lines."""
    withheld = ("\npublished: false\n", "\nremoved: true\n", "\ndeleted: true\n")
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in (content / "news").rglob("*.md")]
    return sum(not any(mark in text.split("\n---", 1)[0] + "\n" for mark in withheld) for text in texts)


@dataclass
class Reply:
    """An HTTP answer as it came over the wire."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET", source: str | None = None,
          timeout: float = 30) -> Reply:
    """One request (a GET unless told) on a fresh connection with exactly these headers (http.client adds
    only Host and `Accept-Encoding: identity` unless given), so no client library decodes or caches anything;
    `source` is the local address to send from (a loopback alias such as 127.0.0.2)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()
