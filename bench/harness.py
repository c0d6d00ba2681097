"""Plumbing for the bench scripts (run.py, load.py, rescan.py, yaml_parsers.py): corpora, child processes
and their trees, memory and CPU of a tree, HTTP, wrk, /usr/bin/time, markdown tables, tools and machine
facts. Standard library only: run.py may run under another Python than the project's .venv."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work"  # gitignored (/bench/work/): corpora, Hugo sites, logs, nginx prefix
VENV = ROOT / ".venv" / "bin"
PYTHON = VENV / "python"
# binary -> Debian package that provides it
TOOLS = {"hugo": "hugo", "wrk": "wrk", "nginx": "nginx-light", "/usr/bin/time": "time"}


def python_cmd(*args: str) -> list[str]:
    """The project's venv interpreter (the harness itself may run under another Python)."""
    return [str(PYTHON) if PYTHON.exists() else sys.executable, *args]


def ensure_corpus(path: Path, items: int, topics: int, *flags: str, timeout: float | None = None) -> bool:
    """Generate a content directory with tools/gen_corpus.py (news/*.md, topics/*.yaml; `flags` such as
    --seed or --bad go to it) unless a complete one is at `path`; True when it was generated now. The
    marker is written last, so an interrupted generation is done again."""
    marker = path / ".complete"  # a hidden file: the scanner ignores it
    if marker.exists():
        return False
    subprocess.run(python_cmd(str(ROOT / "tools" / "gen_corpus.py"), "--out", str(path), "--items", str(items),
                              "--topics", str(topics), *flags), check=True, timeout=timeout)
    marker.write_text("")
    return True


def walk(root: str) -> int:
    """Visit every file under root with os.scandir and stat it, as a no-change rescan must; the count."""
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat()
                    count += 1
    return count


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A markdown table; `align` has a letter per column, "r" for a right-aligned one (the rest left)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(headers), "l")) + "|"
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ processes

@contextmanager
def server(cmd: Sequence[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
           grace: float = 20) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group for the duration of the block, then stop that group.

    Output goes to a file, never a pipe: nobody reads a pipe during a wrk run and a full pipe blocks
    gunicorn's access log."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc, grace)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the process group we started (by its id), then SIGKILL what is left after `grace` s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float,
              fatal: Sequence[str] = ()) -> float:
    """Poll `url` until it answers 200; return seconds waited. Fail early when the process exits or its
    log shows one of the `fatal` strings (e.g. gunicorn killing workers); errors end with the log."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered; {log}:\n{_tail(log)}")
        text = log.read_text(errors="replace") if fatal else ""
        for marker in fatal:
            if marker in text:
                raise RuntimeError(f"{marker!r} in {log} after {time.monotonic() - started:.0f} s:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass  # not listening yet, 503 before the first scan, or a worker busy scanning
        if time.monotonic() - started > deadline:
            raise RuntimeError(f"{url} not healthy after {deadline:.0f} s; {log}:\n{_tail(log)}")
        time.sleep(0.2)


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now (other sessions run servers on this machine too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """One GET without following anything; 304 and errors come back as statuses, not exceptions. Header
    names are looked up in any case (granian sends them in lower case)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def timed_run(cmd: Sequence[str], log: Path, timeout: float, cwd: Path | None = None) -> dict[str, float]:
    """Run `cmd` under /usr/bin/time -v with output to `log`; raise on timeout or failure. Returns wall
    and CPU (user + sys) seconds and peak RSS in MB of the process and its waited-for children."""
    report = log.with_suffix(".time")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(report), *cmd], stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)} (log {log})") from None
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave nothing running behind us
            stop_group(proc)
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{_tail(log)[-2000:]}")
    fields = dict(line.strip().rsplit(": ", 1) for line in report.read_text().splitlines() if ": " in line)
    wall = 0.0
    for part in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
        wall = wall * 60 + float(part)
    return {"wall": wall, "cpu": float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]),
            "rss_mb": int(fields["Maximum resident set size (kbytes)"]) / 1024}


# ------------------------------------------------------------------------- process trees, memory, CPU

def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(x) for x in f.read().split())
    return sorted(found)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (server master, workers, parse processes)."""
    tree = [pid]
    for p in tree:  # grows while it is read: breadth first
        tree.extend(children(p))
    return tree


def memory_kib(pids: Iterable[int], key: str = "VmRSS") -> dict[int, int]:
    """One memory figure per process in KiB: VmRSS or VmHWM (/proc/<pid>/status) or Pss (smaps_rollup,
    which splits the pages forked workers share between them); processes gone meanwhile are left out."""
    source, found = ("smaps_rollup" if key == "Pss" else "status"), {}
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/{source}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    found[pid] = int(line.split()[1])
                    break
    return found


class Sampler:
    """Calls `measure()` every `every` seconds on a thread from start() to stop() and keeps what it
    returns in `samples`; sample() takes one more at any time. A peak shorter than `every` can be missed."""

    def __init__(self, measure: Callable[[], Any], every: float):
        self.measure, self.every, self.samples = measure, every, []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def sample(self) -> Any:
        """One sample now, kept with the others."""
        value = self.measure()
        self.samples.append(value)
        return value

    def start(self) -> Sampler:
        """Start sampling on the thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> None:
        """Stop the thread (idempotent)."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def cpu_seconds(pids: Sequence[int], reaped: bool = False) -> float:
    """CPU seconds used by `pids`; with `reaped`, also by children they have already waited for (a
    finished parse pool): comparable with Hugo's user + sys even when other work stretches wall time."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if reaped:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, deadline: float, busy_below: float = 0.15) -> float:
    """Wait until the process tree uses less than `busy_below` of one CPU over a second; return seconds
    waited. A server answers once its FIRST worker is up; the others may still be starting."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        pids = process_tree(pid)
        before = cpu_seconds(pids)
        time.sleep(1.0)
        if cpu_seconds(pids) - before < busy_below:
            return time.monotonic() - started
    raise RuntimeError(f"process tree of {pid} still busy after {deadline:.0f} s")


# ------------------------------------------------------------------------------------------------ wrk

@dataclass(frozen=True)
class WrkRun:
    """The parts of a wrk report we use."""

    rps: float
    p50_ms: float
    p99_ms: float
    bad_status: int
    socket_errors: str
    # wrk's connections per server process (most first), sampled halfway through the run: "32" on a
    # two-worker server means one worker had them all.
    spread: tuple[int, ...] = ()
    runs: tuple[WrkRun, ...] = ()  # every run, when several were made

    def note(self) -> str:
        """p50/p99, every run and anything that went wrong, for the table's notes column."""
        text = f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        if len(self.runs) > 1:
            runs = ", ".join(f"{r.rps:,.0f} [{'/'.join(map(str, r.spread)) or '?'}]" for r in self.runs)
            text += f" (best of {len(self.runs)} runs, [connections per server process]: {runs} req/s)"
        if self.bad_status:
            text += f", {self.bad_status} non-2xx/3xx"
        if self.socket_errors:
            text += f", socket errors: {self.socket_errors}"
        return text


@dataclass(frozen=True)
class Wrk:
    """How wrk loads a server: `runs` bounded runs per figure, of which the best is reported."""

    threads: int
    connections: int
    seconds: int
    runs: int

    def best(self, url: str, log: Path, headers: Sequence[str] = ()) -> WrkRun:
        """The run with the highest throughput, with every run in `runs`. Against gunicorn a run's
        throughput is bimodal: wrk opens its keep-alive connections at once, and a worker that is busy at
        that moment (a rescan, the last run's queue) may get none of them for the whole run, leaving a
        core idle (measured: 32/0 connections gave ~1.4k req/s where 30/2 and 16/16 gave ~3.3k). The
        median of three still fell on that mode for one side only (bare WSGI 304s: 2,005, 1,799, 3,848
        req/s); the best run is the one where the server used all its workers, on every side alike, and
        each run's connection spread is recorded to show it."""
        runs = [self._once(url, log.with_name(f"{log.stem}-{n + 1}{log.suffix}"), headers) for n in range(self.runs)]
        return dataclasses.replace(max(runs, key=lambda r: r.rps), runs=tuple(runs))

    def _once(self, url: str, log: Path, headers: Sequence[str]) -> WrkRun:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError(f"wrk only loads 127.0.0.1, not {url}")
        cmd = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{self.seconds}s", "--latency"]
        for header in headers:
            cmd += ["-H", header]
        cmd.append(url)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                time.sleep(self.seconds / 2)
                spread = connection_spread(int(url.split(":")[2].split("/")[0]))
                out, err = proc.communicate(timeout=self.seconds + 60)
            except BaseException:
                proc.kill()
                raise
        log.write_text(" ".join(cmd) + "\n" + out + err + f"connections per server process: {spread}\n")
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()[:500]}")
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if not rps:
            raise RuntimeError(f"cannot read wrk output:\n{out}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors = re.search(r"Socket errors: (.*)", out)
        return WrkRun(rps=float(rps.group(1)), p50_ms=_latency(out, "50%"), p99_ms=_latency(out, "99%"),
                      bad_status=int(bad.group(1)) if bad else 0,
                      socket_errors=errors.group(1).strip() if errors else "", spread=spread)


def _latency(out: str, pct: str) -> float:
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)] if m else float("nan")


def connection_spread(port: int) -> tuple[int, ...]:
    """Established TCP connections whose local port is `port`, counted per process holding them (most
    first); read from /proc, so it needs no tool and sees every server (gunicorn, granian, nginx)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(name).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
                    inodes.add(f"socket:[{fields[9]}]")
    counts: dict[str, int] = {}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        held = 0
        try:
            for entry in os.scandir(fd_dir):
                with contextlib.suppress(OSError):  # closed meanwhile
                    held += os.readlink(entry.path) in inodes
        except OSError:  # the process is gone, or not ours to read
            continue
        if held:
            counts[fd_dir.parent.name] = held
    return tuple(sorted(counts.values(), reverse=True))


# ------------------------------------------------------------------------------- tools and machine

def ensure_tools() -> dict[str, str]:
    """Install missing tools with apt-get (we run as root on Debian) and return {tool: version}."""
    missing = [pkg for tool, pkg in TOOLS.items() if not _have(tool)]
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit(f"missing tools {missing}: install them (Debian packages) and rerun")
        print(f"installing with apt-get: {' '.join(missing)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Another session may hold the dpkg lock (concurrent installs on this machine): wait for it.
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
        still = [tool for tool in TOOLS if not _have(tool)]
        if still:
            raise SystemExit(f"apt-get did not provide {still}")
    return tool_versions()


def _have(tool: str) -> bool:
    return Path(tool).exists() if tool.startswith("/") else shutil.which(tool) is not None


def _first_line(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (proc.stdout or proc.stderr).strip()  # nginx -v writes to stderr, wrk -v exits 1
    return text.splitlines()[0] if text else "unknown"


def tool_versions() -> dict[str, str]:
    """Versions of everything the numbers depend on."""
    py = [str(PYTHON), "-c",
          "import sys, yaml, gunicorn, importlib.metadata as m;"
          "print(sys.version.split()[0], yaml.__version__, yaml.__with_libyaml__, gunicorn.__version__,"
          " m.version('flask'), m.version('granian'))"]
    parts = _first_line(py).split()
    versions = {
        "hugo": _first_line(["hugo", "version"]),
        "wrk": _first_line(["wrk", "-v"]),
        "nginx": _first_line(["nginx", "-v"]),
        "time": _first_line(["/usr/bin/time", "--version"]),  # Debian's says "UNKNOWN": the package tells
    }
    for tool, package in TOOLS.items():
        name = tool.rsplit("/", 1)[-1]
        installed = _package_version(package) or _package_version(name)  # nginx may come as nginx, not -light
        if installed:
            versions[name] += f" (Debian {installed})"
    if len(parts) == 6:
        versions.update({"python (.venv)": parts[0], "PyYAML": f"{parts[1]} (libyaml: {parts[2]})",
                         "gunicorn": parts[3], "Flask": parts[4], "granian": parts[5]})
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "syndicator"],
                           capture_output=True, text=True).stdout.strip()
    versions["syndicator"] = commit + (" + uncommitted changes in syndicator/" if dirty else "")
    return versions


def _package_version(package: str) -> str:
    try:
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}", package],
                              capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    fields = proc.stdout.split()
    return f"{fields[0]} {fields[1]}" if proc.returncode == 0 and fields[-1:] == ["installed"] else ""


def machine() -> dict[str, str]:
    """CPU, memory, kernel and date: enough to tell whether two RESULTS.md are comparable."""
    info = Path("/proc/cpuinfo").read_text()
    cpu = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    mem_kb = re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M)
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = found.group(1) if found else os_name
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu.group(1).strip() if cpu else "unknown",
        "ram": f"{int(mem_kb.group(1)) / 1024 / 1024 if mem_kb else 0:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "os": os_name,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def loadavg() -> str:
    """1/5/15-minute load: a busy machine (someone else's tests) makes every number here worse."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_quiet(limit: float, below: float = 0.5) -> None:
    """Wait up to `limit` seconds for the 1-minute load average to drop below `below` (others' test runs on
    this machine take the same two cores our numbers need)."""
    started = time.monotonic()
    while float(loadavg().split()[0]) >= below and time.monotonic() - started < limit:
        print(f"  waiting for a quiet machine: load {loadavg()}", flush=True)
        time.sleep(15)
