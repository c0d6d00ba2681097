"""/metrics counts every worker: requests spread over the workers of one server add up in any scrape, a
worker that is killed or replaced keeps its requests, and the snapshot's figures are reported once.
Over real HTTP under gunicorn (serve and deploy/gunicorn.conf.py) and granian; both are test
dependencies, so a missing one fails these tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import ROOT, free_port, http_get, poll, served_files, stop, wait_http
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from syndicator.metrics import Metrics, private_directory
from syndicator.snapshot import Publisher

FEED = "/feeds/azure.rss"


def scrape(base: str) -> tuple[str, dict[tuple[str, tuple], float]]:
    """One scrape: its text, and its samples by (name, labels)."""
    status, headers, body = http_get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), status
    text = body.decode()
    samples: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"{key} twice in one scrape"
            samples[key] = s.value
    return text, samples


def feed_count(base: str) -> float:
    return scrape(base)[1].get(("syndicator_http_requests_total", (("route", "feed"), ("status", "200"))), 0)


def shares(directory: Path) -> dict[int, float]:
    """Each process's own count of feed 200s, read from its file in the server's directory."""
    found = {}
    for path in directory.glob("counter_*.db"):
        total = 0.0
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[2] == {"route": "feed", "status": "200"}:
                total += value
        found[int(path.stem.rsplit("_", 1)[1])] = total
    return found


def request_until(base: str, directory: Path, done: Callable[[dict[int, float]], bool]) -> int:
    """Feed requests, each on a fresh connection (so that the kernel hands them to any worker), until
    `done(shares)`; returns how many were made."""
    made, deadline = 0, time.monotonic() + 60
    while not done(shares(directory)):
        assert time.monotonic() < deadline, f"after {made} requests, per worker: {shares(directory)}"
        for _ in range(10):
            assert http_get(base + FEED)[0] == 200
            made += 1
    return made


def answered(pids: Callable[[dict[int, float]], set[int]], at_least: int = 2):
    return lambda found: len({pid for pid, n in found.items() if n > 0} & pids(found)) >= at_least


def assert_once_and_no_pid(text: str, samples: dict, corpus: Path) -> None:
    """The snapshot's figures once, as they are (not summed over workers), and no pid label at all."""
    assert samples[("syndicator_items", ())] == served_files(corpus)
    assert samples[("syndicator_topics", ())] == 8 and samples[("syndicator_healthy", ())] == 1
    assert text.count("\nsyndicator_items ") == 1 and "pid=" not in text, text


@contextmanager
def running(tmp_path: Path, command: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """A server as a process of its own (the tests signal it and its workers), with TMPDIR private to the
    test so that its metrics directory can be found; yields the process, its base URL and its log."""
    port = free_port()
    tmp, log = tmp_path / "tmp", tmp_path / "serve.log"
    tmp.mkdir()
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env = {**inherited, "TMPDIR": str(tmp), "SYNDICATOR_PORT": str(port), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log)
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()
    assert not list(tmp.iterdir()), "the metrics directory outlived its server"


def metrics_dir(tmp_path: Path) -> Path:
    (directory,) = (tmp_path / "tmp").glob("syndicator-metrics-*")
    return directory


def serve_command(corpus: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "syndicator.cli", "serve", "--content", str(corpus), "--workers", "2", *args]


def test_gunicorn_one_scrape_counts_both_workers_and_a_killed_worker_keeps_its_count(corpus, tmp_path):
    with running(tmp_path, serve_command(corpus), {}) as (proc, base, log):
        directory = metrics_dir(tmp_path)
        n = request_until(base, directory, answered(lambda found: set(found)))
        before = shares(directory)
        assert sum(before.values()) == n and feed_count(base) == n, before
        text, samples = scrape(base)
        assert_once_and_no_pid(text, samples, corpus)

        killed = max(before, key=before.__getitem__)
        os.kill(killed, signal.SIGKILL)
        poll(lambda: log.read_text().count("Booting worker") == 3, 30, "gunicorn replacing the killed worker")
        assert feed_count(base) == n  # the killed worker's requests are still in
        # The replacement counts into a file of its own, beside the dead worker's.
        m = request_until(base, directory, answered(lambda found: set(found) - set(before), at_least=1))
        assert feed_count(base) == n + m
        assert killed in shares(directory) and len(shares(directory)) == 3


def test_granian_one_scrape_counts_both_workers_and_a_reload_keeps_the_old_workers_counts(corpus, tmp_path):
    """granian replaces its workers on HUP (it respawns no killed worker: the server stops instead)."""
    with running(tmp_path, serve_command(corpus, "--server", "granian"), {}) as (proc, base, log):
        directory = metrics_dir(tmp_path)
        n = request_until(base, directory, answered(lambda found: set(found)))
        old = shares(directory)
        assert sum(old.values()) == n and feed_count(base) == n, old
        text, samples = scrape(base)
        assert_once_and_no_pid(text, samples, corpus)

        proc.send_signal(signal.SIGHUP)
        poll(lambda: log.read_text().count("Stopped old worker") == 2, 60, "both workers replaced")
        assert feed_count(base) == n  # answered by a new worker: the old workers' requests are in
        m = request_until(base, directory, answered(lambda found: set(found) - set(old)))
        assert feed_count(base) == n + m and len(shares(directory)) == 4


def test_gunicorn_conf_counts_every_worker_too(corpus, tmp_path):
    """`gunicorn -c deploy/gunicorn.conf.py` makes its own directory (PROMETHEUS_MULTIPROC_DIR) the same way."""
    env = {"SYNDICATOR_CONTENT": str(corpus), "SYNDICATOR_WORKERS": "2", "SYNDICATOR_CACHE_DIR": "off"}
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
    with running(tmp_path, command, env) as (_proc, base, _log):
        directory = metrics_dir(tmp_path)
        n = request_until(base, directory, answered(lambda found: set(found)))
        assert feed_count(base) == n
        assert_once_and_no_pid(*scrape(base), corpus)


def _render(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_a_forked_process_counts_from_zero_into_its_own_file_and_a_scrape_sums_them(tmp_path):
    metrics = Metrics(Publisher(), str(tmp_path))
    metrics.count("feed", 200)  # before the fork: the child must not carry it over
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(3):
                metrics.count("feed", 200)
            metrics.count("index", 404)
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    metrics.count("feed", 200)
    samples = _render(metrics)
    assert samples[("syndicator_http_requests_total", (("route", "feed"), ("status", "200")))] == 5
    assert samples[("syndicator_http_requests_total", (("route", "index"), ("status", "404")))] == 1
    assert sorted(shares(tmp_path)) == sorted([os.getpid(), pid])


def test_a_process_that_gets_a_dead_one_s_pid_adds_to_its_count(tmp_path):
    first = Metrics(Publisher(), str(tmp_path))
    for _ in range(2):
        first.count("feed", 200)
    again = Metrics(Publisher(), str(tmp_path))  # same pid, same directory: as a reused pid would be
    again.count("feed", 200)
    assert _render(again)[("syndicator_http_requests_total", (("route", "feed"), ("status", "200")))] == 3


def test_without_a_directory_a_process_reports_its_own_counts():
    metrics = Metrics(Publisher())
    metrics.count("feed", 304)
    metrics.count("feed", 304)
    samples = _render(metrics)
    assert samples[("syndicator_http_requests_total", (("route", "feed"), ("status", "304")))] == 2
    assert samples[("syndicator_items", ())] == 0 and samples[("syndicator_healthy", ())] == 1


def test_the_directory_is_removed_by_the_process_that_made_it_only():
    block = private_directory()
    path = block.__enter__()
    assert os.listdir(path) == []
    pid = os.fork()
    if pid == 0:  # as a gunicorn worker unwinds through serve when it exits
        try:
            block.__exit__(None, None, None)
            os._exit(0 if os.path.isdir(path) else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0 and os.path.isdir(path)
    block.__exit__(None, None, None)
    assert not os.path.exists(path)
