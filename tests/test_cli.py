"""The `syndicator` command: check, topics, settings precedence, and `serve` over real HTTP (gunicorn)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from helpers import ROOT, SYNDICATOR, parse, serve, served_files

from syndicator.config import ConfigError, load_settings


def run(*args, env=None):
    return subprocess.run([*SYNDICATOR, *args], capture_output=True, text=True, env=env, timeout=120)


def test_check_lists_problems_and_exits_1(corpus):
    assert run("check", "--content", str(corpus)).returncode == 0
    (corpus / "news" / "bad.md").write_text("no front matter\n", encoding="utf-8")
    result = run("check", "--content", str(corpus))
    assert result.returncode == 1
    assert result.stdout.strip() == "news/bad.md: no YAML front matter (the file must start with a '---' line)"
    machine = json.loads(run("check", "--content", str(corpus), "--format", "json").stdout)
    assert machine["problems"] == [{"path": "news/bad.md",
                                    "reason": "no YAML front matter (the file must start with a '---' line)"}]


def test_check_on_a_missing_directory_says_so(tmp_path):
    result = run("check", "--content", str(tmp_path / "nope"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_topics_prints_slug_name_count(corpus):
    lines = run("topics", "--content", str(corpus)).stdout.splitlines()
    assert len(lines) == 8
    slug, count, rest = lines[1].split(None, 2)
    name, kinds = rest.split("  [")
    assert slug == "azure" and name == "Azure" and int(count) > 0
    per_kind = dict(part.split(" ") for part in kinds.removesuffix("]").split(", "))
    assert set(per_kind) <= {"article", "video", "download"} and sum(map(int, per_kind.values())) == int(count)


def test_settings_precedence_file_env_flag(tmp_path):
    config = tmp_path / "syndicator.yaml"
    config.write_text("port: 9000\ninterval: 30\ntitle: From file\n")
    s = load_settings(str(config), env={"SYNDICATOR_INTERVAL": "20"}, overrides={"title": "From flag", "host": None})
    assert (s.port, s.interval, s.title, s.host) == (9000, 20, "From flag", "127.0.0.1")
    with pytest.raises(ConfigError, match="interval must be an integer"):
        load_settings(env={"SYNDICATOR_INTERVAL": "soon"})
    config.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="unknown setting.*prot"):
        load_settings(str(config), env={})
    with pytest.raises(ConfigError, match="base_url must be an http"):
        load_settings(env={"SYNDICATOR_BASE_URL": "ftp://x"})


def test_serve_runs_gunicorn_and_serves_parsable_feeds(corpus):
    with serve(corpus, "--workers", "2", "--interval", "1") as base:
        with urllib.request.urlopen(base + "/feeds/azure.rss") as response:
            assert response.headers["Server"].startswith("gunicorn")
            parsed = parse(response.read())
        assert parsed.feed.link == base + "/topics/azure/"
        with urllib.request.urlopen(base + "/status") as response:
            assert json.load(response)["items"] == served_files(corpus)
        # A change on disk shows up without a restart, in every worker.
        (corpus / "news" / "zz-new.md").write_text(
            "---\ntitle: Live change\npublishedDateTime: 2026-01-01T00:00:00Z\n"
            "webUrl: https://x.org/live\ntopics: [Azure]\n---\n", encoding="utf-8")
        deadline = time.monotonic() + 30
        seen = 0
        while time.monotonic() < deadline and seen < 6:
            with urllib.request.urlopen(base + "/feeds/azure.atom") as response:
                seen = seen + 1 if b"Live change" in response.read() else 0
            time.sleep(0.1)
        assert seen >= 6


def test_default_content_is_the_bundled_directory():
    with serve(ROOT / "content") as base:
        with urllib.request.urlopen(base + "/status") as response:
            status = json.load(response)
    assert status["items"] >= 40 and len(status["topics"]) >= 6 and status["problems"] == []


def test_readme_documents_every_setting():
    from syndicator.config import SETTINGS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for s in SETTINGS:
        assert f"| `{s.name}` | `--{s.name.replace('_', '-')}` | `SYNDICATOR_{s.name.upper()}` |" in readme, s.name


def test_each_command_offers_exactly_the_flags_its_settings_rows_name():
    from syndicator.config import SETTINGS

    for command in ("serve", "build", "check", "topics"):
        usage = run(command, "--help").stdout
        offered = {s.name for s in SETTINGS if s.flag + " " in usage}
        assert offered == {s.name for s in SETTINGS if command in s.commands}, command


def test_help_says_what_the_commands_print_and_which_flags_are_required():
    assert "slug, item count, name and item count per kind" in run("--help").stdout
    check = run("check", "--help").stdout
    assert "--format {text,json}" in check and "one 'PATH: reason' line per problem" in check
    build = " ".join(run("build", "--help").stdout.split())
    assert "--base-url URL " in build and "[--base-url URL]" not in build
    missing = run("build", "--content", str(ROOT / "content"), "--out", "/nonexistent/x", env=_env())
    assert missing.returncode == 2
    assert "build needs base_url: give --base-url, SYNDICATOR_BASE_URL or 'base_url:'" in missing.stderr


def _env(**variables):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATOR_")}
    return {**env, **variables}


def test_booleans_are_yaml_booleans_everywhere(tmp_path):
    config = tmp_path / "syndicator.yaml"
    for written, expected in (("true", True), ("false", False), ("yes", True), ("off", False), ("1", True)):
        config.write_text(f"fs_events: {written}\n")
        assert load_settings(str(config), env={}).fs_events is expected, written
        assert load_settings(env={"SYNDICATOR_FS_EVENTS": written}).fs_events is expected, written
        assert load_settings(env={}, overrides={"fs_events": written}).fs_events is expected, written
    for wrong in ("2", "maybe"):
        with pytest.raises(ConfigError, match=f"--fs-events: fs_events must be true or false.*got '{wrong}'"):
            load_settings(env={}, overrides={"fs_events": wrong})
    config.write_text("fs_events: 2\n")
    with pytest.raises(ConfigError, match="fs_events must be true or false"):
        load_settings(str(config), env={})
    result = run("serve", "--fs-events", "2", "--port", "1", env=_env())
    assert result.returncode == 2 and "fs_events must be true or false" in result.stderr


def test_range_errors_name_the_allowed_range():
    with pytest.raises(ConfigError, match=r"^--interval: interval must be at least 1, got -5$"):
        load_settings(env={}, overrides={"interval": "-5"})
    with pytest.raises(ConfigError, match=r"^environment SYNDICATOR_PORT: port must be from 1 to 65535, got 70000$"):
        load_settings(env={"SYNDICATOR_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"server must be gunicorn or granian, got 'uwsgi'"):
        load_settings(env={"SYNDICATOR_SERVER": "uwsgi"})
    with pytest.raises(ConfigError, match=r"log_level must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"):
        load_settings(env={"SYNDICATOR_LOG_LEVEL": "LOUD"})


def test_a_misspelt_variable_is_warned_about(caplog):
    settings = load_settings(env={"SYNDICATOR_PROT": "9000", "SYNDICATOR_CONFIG": "", "SYNDICATOR_UPDATE_DOCS": "1"})
    assert settings.port == 8080
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].startswith("environment SYNDICATOR_PROT is not a setting and is ignored")
    result = run("check", "--content", str(ROOT / "content"), env=_env(SYNDICATOR_PROT="9000"))
    assert "SYNDICATOR_PROT is not a setting" in result.stderr


def test_a_missing_content_directory_names_the_setting(tmp_path):
    for command in ("check", "topics", "serve"):
        result = run(command, "--content", str(tmp_path / "nope"), env=_env())
        assert result.returncode == 2, command
        assert f"content: directory {tmp_path / 'nope'} does not exist" in result.stderr, command
        assert "--content, SYNDICATOR_CONTENT or 'content:'" in result.stderr, command
