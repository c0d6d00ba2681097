"""The `syndicator` command: check, topics, settings precedence, and `serve` over real HTTP (gunicorn)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from conftest import ROOT, SYNDICATOR, parse, serve

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
    slug, count, name = lines[1].split(None, 2)
    assert slug == "azure" and name == "Azure" and int(count) > 0


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
            assert json.load(response)["items"] == 60
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


def test_settings_dataclass_agrees_with_the_settings_table():
    import dataclasses

    from syndicator.config import SETTINGS, Settings

    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert fields == {s.name: s.default for s in SETTINGS}
