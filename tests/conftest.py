"""Shared fixtures: generated content trees, apps over them, and helpers to parse our feeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

from syndicator.config import Settings
from syndicator.web import create_app

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "tools" / "gen_corpus.py"
SEED = ROOT / "content" / "news" / "2020-05-19-microsoft-builds-massive-supercomputer-for-smarter-ai.md"


def generate(out: Path, items: int = 40, topics: int = 6, bad: float = 0.0, seed: int = 73) -> Path:
    """A deterministic realistic content tree (tools/gen_corpus.py)."""
    subprocess.run([sys.executable, str(GEN), "--out", str(out), "--items", str(items), "--topics",
                    str(topics), "--bad", str(bad), "--seed", str(seed)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def corpus_template(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("corpus") / "c", items=60, topics=8)


@pytest.fixture
def corpus(tmp_path, corpus_template) -> Path:
    """A private, writable copy of a 60-item, 8-topic corpus."""
    import shutil

    dest = tmp_path / "content"
    shutil.copytree(corpus_template, dest)
    return dest


@pytest.fixture
def make_app():
    def make(content: Path, **settings):
        return create_app(Settings(content=str(content), **settings))
    return make


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
