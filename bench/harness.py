"""Shared plumbing for the benchmark: the context and results, child processes, HTTP waits, wrk,
/usr/bin/time, tool installation and machine facts. Standard library only."""

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
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work"  # gitignored (/bench/work/): corpora, Hugo sites, logs, nginx prefix
VENV = ROOT / ".venv" / "bin"
PYTHON = VENV / "python"

# binary -> Debian package that provides it
TOOLS = {"hugo": "hugo", "wrk": "wrk", "nginx": "nginx-light", "/usr/bin/time": "time"}


class Unavailable(Exception):
    """A measurement cannot run here (feature not built yet, tool missing); the table shows n/a and why."""


class ServerFailed(RuntimeError):
    """A server's log showed a line meaning it will never become healthy."""

    def __init__(self, marker: str, seconds: float, log: Path):
        super().__init__(f"{marker!r} in {log} after {seconds:.0f} s")
        self.marker = marker
        self.seconds = seconds


@dataclass(frozen=True)
class Corpus:
    """A generated content directory (gen_corpus.py layout: news/*.md and topics/*.yaml)."""

    key: str  # "main" or "small"; measurement keys embed it
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
    """Everything a measurement needs, and where it records what it measured."""

    quick: bool
    main: Corpus
    small: Corpus
    wrk_seconds: int
    wrk_threads: int
    wrk_connections: int
    wrk_runs: int  # wrk runs per measurement; the run with the highest throughput is reported
    timeout: float  # upper bound for any one heavy child process (a build)
    serve_timeout: float  # upper bound for `syndicator serve` to become healthy
    serve_interval: int  # rescan interval given to `syndicator serve`
    body_bytes: int  # size of the synthetic feed when ours could not provide a real one
    yaml_items: int
    results: dict[str, Result] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # Bytes of the feed that "ours" served under wrk: the WSGI and nginx baselines serve the same bytes.
    sample_feed: bytes | None = None
    sample_feed_name: str = ""
    sample_port: int = 0  # the port it was served on, which its self links name

    @property
    def logs(self) -> Path:
        path = WORK / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, key: str, value: float, unit: str, note: str = "") -> None:
        """Store a measurement and echo it, so a long run shows progress."""
        self.results[key] = Result(value, unit, note)
        print(f"    {key} = {value:,.3f} {unit}" + (f"  ({note})" if note else ""), flush=True)

    def skip(self, keys: Sequence[str], reason: str) -> None:
        """Mark measurements as not available, with the reason the table will show."""
        for key in keys:
            self.skipped.setdefault(key, reason)
        print(f"    n/a {', '.join(keys)}: {reason}", flush=True)


# ---------------------------------------------------------------------------------------------- tools

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
    """CPU, memory, kernel and load: enough to tell whether two RESULTS.md are comparable."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "os": _os_name(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def wait_quiet(limit: float, below: float = 0.5) -> None:
    """Wait up to `limit` seconds for the 1-minute load average to drop below `below` (others' test runs on
    this machine take the same two cores our numbers need)."""
    started = time.monotonic()
    while float(loadavg().split()[0]) >= below and time.monotonic() - started < limit:
        print(f"  waiting for a quiet machine: load {loadavg()}", flush=True)
        time.sleep(15)


def loadavg() -> str:
    """1/5/15-minute load: a busy machine (someone else's tests) makes every number here worse."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class Phase:
    """One step of the run: `fn(ctx)` records the measurements named in `keys` (or raises Unavailable)."""

    name: str
    fn: Callable[[Context], None]
    keys: tuple[str, ...]


# ------------------------------------------------------------------------------------------ processes

@dataclass
class Timed:
    """What /usr/bin/time -v says about one child process (and its waited-for children)."""

    wall: float
    max_rss_mb: float
    user: float
    sys: float
    returncode: int


def timed_run(cmd: Sequence[str], log: Path, timeout: float, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Timed:
    """Run `cmd` under /usr/bin/time -v with output to `log`; raise on timeout or failure."""
    report = log.with_suffix(".time")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", str(report), *cmd], stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)} (log {log})") from None
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave nothing running behind us
            _kill_group(proc)
            raise
    text = report.read_text()
    timed = Timed(wall=_elapsed(_field(text, "Elapsed (wall clock) time")),
                  max_rss_mb=int(_field(text, "Maximum resident set size (kbytes)")) / 1024,
                  user=float(_field(text, "User time (seconds)")),
                  sys=float(_field(text, "System time (seconds)")),
                  returncode=proc.returncode)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return timed


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(name):
            return line.rsplit(": ", 1)[1].strip()
    raise RuntimeError(f"/usr/bin/time output has no {name!r}")


def _elapsed(value: str) -> float:
    """'1:02:03.45' or '2:03.45' (h:mm:ss or m:ss) -> seconds."""
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on right now (other sessions run servers on this machine too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: Sequence[str], log: Path, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group for the duration of the block, then stop that group.

    Output goes to a file, never a pipe: nobody reads a pipe during a wrk run and a full pipe blocks
    gunicorn's access log."""
    out = open(log, "wb")  # closed in the finally below
    proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                            start_new_session=True)
    try:
        yield proc
    finally:
        _kill_group(proc)
        out.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started (by its id), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float,
              fatal: Sequence[str] = ()) -> float:
    """Poll `url` until it answers 200; return seconds waited. Fail early when the process exits or its
    log shows one of the `fatal` strings (e.g. gunicorn killing workers)."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered; see {log}")
        text = log.read_text(errors="replace") if fatal else ""
        for marker in fatal:
            if marker in text:
                raise ServerFailed(marker, time.monotonic() - started, log)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, 503 before the first scan, or a worker busy scanning
        if time.monotonic() - started > deadline:
            raise RuntimeError(f"{url} not healthy after {deadline:.0f} s; see {log}")
        time.sleep(0.25)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """One GET without following anything; 304 and errors come back as statuses, not exceptions. Header
    names are looked up in any case (granian sends them in lower case)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (gunicorn master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _cpu_seconds(pids: Sequence[int], reaped: bool = False) -> float:
    """CPU seconds used by `pids`; with `reaped`, also by children they have already waited for."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if reaped:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: e.g. a finished parse pool
    return total / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds the process tree has used so far: comparable with Hugo's user + sys even when other
    work on the machine stretches the wall time."""
    return _cpu_seconds(process_tree(pid), reaped=True)


def wait_idle(pid: int, deadline: float, busy_below: float = 0.15) -> float:
    """Wait until the process tree uses less than `busy_below` of one CPU over a second; return seconds
    waited. /healthz answers once the FIRST worker has scanned; the others may still be parsing."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        pids = process_tree(pid)
        before = _cpu_seconds(pids)
        time.sleep(1.0)
        if _cpu_seconds(pids) - before < busy_below:
            return time.monotonic() - started
    raise RuntimeError(f"process tree of {pid} still busy after {deadline:.0f} s")


def tree_memory_mb(pid: int) -> tuple[float, float, int]:
    """(sum of current RSS, sum of peak RSS, number of processes) over the process tree, in MB."""
    rss = hwm = 0
    pids = process_tree(pid)
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, hwm / 1024, len(pids)


def tree_pss_mb(pid: int) -> float:
    """Sum of current PSS over the process tree, in MB: forked workers share the master's pages, which
    a sum of RSS counts once per process and PSS splits between them."""
    pss = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return pss / 1024


# ------------------------------------------------------------------------------------------------ wrk

@dataclass
class Wrk:
    """The parts of a wrk report we use."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    bad_status: int
    socket_errors: str
    # wrk's connections per server process (most first), sampled halfway through the run: "32" on a
    # two-worker server means one worker had them all.
    spread: tuple[int, ...] = ()
    runs: tuple[Wrk, ...] = ()  # every run, when several were made

    def note(self) -> str:
        """p50/p99 and anything that went wrong, for the table's notes column."""
        text = f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        if len(self.runs) > 1:
            runs = ", ".join(f"{r.rps:,.0f} [{'/'.join(map(str, r.spread)) or '?'}]" for r in self.runs)
            text += f" (best of {len(self.runs)} runs, [connections per server process]: {runs} req/s)"
        if self.bad_status:
            text += f", {self.bad_status} non-2xx/3xx"
        if self.socket_errors:
            text += f", socket errors: {self.socket_errors}"
        return text


_LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(ctx: Context, url: str, log: Path, headers: Sequence[str] = ()) -> Wrk:
    """`ctx.wrk_runs` bounded wrk runs against 127.0.0.1; the one with the highest throughput, with every
    run in `runs`. Against gunicorn a run's throughput is bimodal: wrk opens its keep-alive connections
    at once, and a worker that is busy at that moment (a rescan, the last run's queue) may get none of
    them for the whole run, leaving a core idle (measured: 32/0 connections gave ~1.4k req/s where 30/2
    and 16/16 gave ~3.3k). The median of three still fell on that mode for one side only (bare WSGI
    304s: 2,005, 1,799, 3,848 req/s); the best run is the one where the server used all its workers, on
    every side alike, and each run's connection spread is recorded to show it."""
    results = []
    for run in range(ctx.wrk_runs):
        results.append(_run_wrk_once(ctx, url, log.with_name(f"{log.stem}-{run + 1}{log.suffix}"), headers))
    best = max(results, key=lambda r: r.rps)
    return dataclasses.replace(best, runs=tuple(results))


def _run_wrk_once(ctx: Context, url: str, log: Path, headers: Sequence[str]) -> Wrk:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"wrk only loads 127.0.0.1, not {url}")
    cmd = ["wrk", f"-t{ctx.wrk_threads}", f"-c{ctx.wrk_connections}", f"-d{ctx.wrk_seconds}s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    cmd.append(url)
    port = int(url.split(":")[2].split("/")[0])
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            time.sleep(ctx.wrk_seconds / 2)
            spread = connection_spread(port)
            out, err = proc.communicate(timeout=ctx.wrk_seconds + 60)
        except BaseException:
            proc.kill()
            raise
    log.write_text(" ".join(cmd) + "\n" + out + err + f"connections per server process: {spread}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()[:500]}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return Wrk(rps=float(rps.group(1)), requests=int(total.group(1)),
               p50_ms=_latency(out, "50%"), p99_ms=_latency(out, "99%"),
               bad_status=int(bad.group(1)) if bad else 0,
               socket_errors=errors.group(1).strip() if errors else "", spread=spread)


def connection_spread(port: int) -> tuple[int, ...]:
    """Established TCP connections whose local port is `port`, counted per process holding them (most
    first); read from /proc, so it needs no tool and sees every server (gunicorn, granian, nginx)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
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


def _latency(out: str, pct: str) -> float:
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    return float(m.group(1)) * _LATENCY_UNITS[m.group(2)] if m else float("nan")


def python_cmd(*args: str) -> list[str]:
    """The project's venv interpreter (the harness itself may run under another Python)."""
    return [str(PYTHON) if PYTHON.exists() else sys.executable, *args]


class PeakPss:
    """Samples the PSS sum of a process tree twice a second on a thread; `peak` is the largest seen.

    PSS splits pages shared by forked workers between them, so unlike a sum of peak RSS it does not count
    the master's heap once per worker. Sampling can miss a peak shorter than half a second."""

    def __init__(self, pid: int, every: float = 0.5):
        import threading

        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, tree_pss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_pss_mb(self.pid))
        return self.peak
