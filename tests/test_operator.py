"""What a new operator trips over: one-shot commands judging the files as they are, YAML error lines, quiet
shutdowns, an unwritable home, the deploy helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from helpers import ROOT, SYNDICATOR, bump_mtime, serve

from syndicator.config import Settings
from syndicator.reader import read_item, read_topic
from syndicator.scan import Scanner
from syndicator.snapshot import build_snapshot
from syndicator.web import app_state, create_app

BASE = "https://feeds.example.org"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SYNDICATOR, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _break_after_a_server_saw_it(corpus: Path, cache_dir: Path) -> tuple[str, str]:
    """A server's process scans the corpus, then one of its files breaks and the server rescans (keeping
    the last good version, as it must) and writes its parse cache. Returns the broken file's path and the
    id its last good version has."""
    app = create_app(Settings(content=str(corpus), cache_dir=str(cache_dir)))
    state = app_state(app)
    victim = state.publisher.snapshot.all_items[0]
    path = corpus / victim.path
    path.write_text("---\ntitle: [broken\n---\n", encoding="utf-8")
    bump_mtime(path)
    assert state.rescanner.run_once()
    assert victim in state.publisher.snapshot.all_items  # the server serves the last good version
    state.rescanner.flush()
    assert any(cache_dir.iterdir())
    return victim.path, victim.id


def test_check_and_topics_judge_the_files_as_they_are_now_whatever_a_server_cached(corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    before = json.loads(run("check", "--content", str(corpus), "--format", "json", "--cache-dir", "off").stdout)
    broken, _ = _break_after_a_server_saw_it(corpus, cache_dir)
    fresh = run("check", "--content", str(corpus), "--format", "json", "--cache-dir", "off")
    cached = run("check", "--content", str(corpus), "--format", "json", "--cache-dir", str(cache_dir))
    assert fresh.returncode == cached.returncode == 1
    assert json.loads(cached.stdout) == json.loads(fresh.stdout)
    report = json.loads(cached.stdout)
    assert report["items"] == before["items"] - 1
    assert [p["path"] for p in report["problems"]] == [broken]
    assert "still served" not in report["problems"][0]["reason"]
    text = run("check", "--content", str(corpus), "--cache-dir", str(cache_dir))
    assert text.stdout.startswith(f"{broken}: invalid YAML at line 3, column 1")
    topics = run("topics", "--content", str(corpus), "--cache-dir", str(cache_dir)).stdout
    assert topics == run("topics", "--content", str(corpus), "--cache-dir", "off").stdout

    # The one-shot commands left the server's cache as it was: a restart still serves the last good version.
    warm = Scanner(corpus, cache_file=Settings(content=str(corpus), cache_dir=str(cache_dir)).cache_file)
    snapshot = build_snapshot(warm.scan())
    assert any(i.path == broken for i in snapshot.all_items) and warm.parse_count == 0
    assert [p.path for p in snapshot.problems if p.stale] == [broken]


def test_build_exports_the_files_as_they_are_unless_told_to_keep_last_good_versions(corpus, tmp_path):
    cache_dir = tmp_path / "cache"
    broken, broken_id = _break_after_a_server_saw_it(corpus, cache_dir)
    common = ("build", "--content", str(corpus), "--base-url", BASE, "--cache-dir", str(cache_dir))

    def exported_ids(out: Path) -> set[str]:
        return {item["id"] for item in json.loads((out / "feeds" / "all.json").read_text(encoding="utf-8"))["items"]}

    before = {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()}
    plain = run(*common, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    # A one-shot build leaves its parse cache for the next one (written under its own rule).
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()} != before
    assert "parse cache" in plain.stderr and "written" in plain.stderr
    assert "last good version" not in plain.stderr
    kept = run(*common, "--out", str(tmp_path / "kept"), "--export-last-good")
    assert kept.returncode == 0, kept.stderr
    assert f"exporting the last good version of {broken}" in kept.stderr
    # The broken file's last good version is the newest item: only the kept export has it.
    assert broken_id in exported_ids(tmp_path / "kept") and broken_id not in exported_ids(tmp_path / "plain")


def test_yaml_errors_name_the_line_and_column_of_the_file():
    """Lines count from the file's first line (the opening `---`), not from the front matter's."""
    cases = {
        "---\ntitle: A\nwebUrl: https://x.org/a\n  indented: wrong\n---\n": "line 4, column 11",
        "\ufeff---\r\ntitle: a\r\nbad: : :\r\n---\r\n": "line 3, column 6",  # BOM and CRLF count as nothing
        # An unclosed list runs to the end of the front matter: PyYAML stops at the closing line.
        "---\ntitle: A\npublishedDateTime: 2024-01-01T00:00:00Z\nwebUrl: [oops\n---\nbody\n": "line 5, column 1",
    }
    for text, where in cases.items():
        assert read_item(text.encode(), "news/x.md").reason.startswith(f"invalid YAML at {where}:"), text
    topic = read_topic(b"name: A\n_id: a\n  bad: indent\n", "topics/a.yaml")
    assert topic.reason.startswith("invalid YAML at line 3, column 6:")


FORK_THEN_EXIT = """
import os, sys, time
from syndicator.parallel import fork_call
running = fork_call(time.sleep, 3)  # a multiprocessing child of this process, alive for a while
pid = os.fork()  # what gunicorn does to start a worker
if pid == 0:
    sys.exit(0)  # the worker stops: its interpreter exits normally, atexit handlers and all
_, status = os.waitpid(pid, 0)
running.result()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_worker_exits_without_a_traceback_while_its_parent_has_a_parse_process():
    """A gunicorn worker forked while the master still had a multiprocessing child (the warm start's
    walk) used to print 'Exception ignored in atexit callback ... can only join a child process'."""
    result = subprocess.run([sys.executable, "-c", FORK_THEN_EXIT], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def test_serve_stops_cleanly_with_an_unwritable_home_and_writes_its_cache_where_systemd_says(corpus, tmp_path):
    """HOME as DynamicUser= and the container give it (not writable), the cache directory systemd's
    CacheDirectory= names in $CACHE_DIRECTORY: no error line, a written cache, a clean stop."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    cache = tmp_path / "systemd-cache"
    cache.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_RUNTIME_DIR")}
    env.update(HOME=str(not_a_dir / "home"), CACHE_DIRECTORY=str(cache))
    log = tmp_path / "serve.log"
    for _ in range(2):  # a cold start, then a warm one that forks its workers while the walk runs
        with serve(corpus, "--workers", "2", env_extra=env, log=log) as base:
            with urllib.request.urlopen(base + "/feeds/all.rss") as response:
                assert response.status == 200
        output = log.read_text(errors="replace")
        assert "[ERROR]" not in output and " ERROR " not in output, output
        assert "cannot write parse cache" not in output and "Traceback" not in output, output
        assert "Exception ignored" not in output, output
        assert [p.name for p in cache.iterdir() if p.name.startswith("parse-")], output


def test_status_is_json_in_utf_8(client):
    response = client.get("/status")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_check_nginx_script_checks_both_deploy_configs(tmp_path):
    for name in ("nginx-proxy.conf", "nginx-static.conf"):
        result = subprocess.run([str(ROOT / "deploy" / "check-nginx.sh"), str(ROOT / "deploy" / name)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "test is successful" in result.stderr, (name, result.stderr)
    broken = tmp_path / "broken.conf"
    broken.write_text("server { listen 80; no_such_directive on; }\n")
    result = subprocess.run([str(ROOT / "deploy" / "check-nginx.sh"), str(broken)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and 'unknown directive "no_such_directive"' in result.stderr


def test_the_unit_points_to_a_readme_the_install_steps_put_there():
    unit = (ROOT / "deploy" / "syndicator.service").read_text(encoding="utf-8")
    documentation = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Documentation="))
    assert documentation.startswith("file://")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert documentation.removeprefix("file://") in readme


def test_serve_script_installs_only_when_the_project_changed():
    """scripts/install.sh (what serve.sh and test.sh run) runs pip only when pyproject.toml or the package
    changed since its last install: a second run right after the first installs nothing."""
    def install() -> str:
        result = subprocess.run(["bash", "-x", str(ROOT / "scripts" / "install.sh"), "-e", ".[test]"],
                                capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return result.stderr

    install()  # up to date afterwards, whatever it was before
    assert "pip install" not in install()


def test_a_yaml_file_that_stops_being_a_topic_definition_is_not_brought_back_by_a_later_break(tmp_path):
    (tmp_path / "news").mkdir()
    (tmp_path / "k8s.yaml").write_text("taxonomy: topic\n_id: k8s\nname: Kubernetes\n", encoding="utf-8")
    scanner = Scanner(tmp_path)
    assert [d.slug for d in scanner.scan().topic_defs] == ["k8s"]
    (tmp_path / "k8s.yaml").write_text("some: other data\n", encoding="utf-8")
    bump_mtime(tmp_path / "k8s.yaml")
    assert scanner.scan().topic_defs == ()
    (tmp_path / "k8s.yaml").write_text("some: [broken\n", encoding="utf-8")
    bump_mtime(tmp_path / "k8s.yaml", 10)
    broken = scanner.scan()
    assert broken.topic_defs == () and [p.stale for p in broken.problems] == [False]
