"""Fixtures: generated content trees and apps over them (helpers.py holds the helpers they use)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import generate

from syndicator.config import Settings
from syndicator.web import create_app


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Parse caches go to a scratch directory, never to the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)  # systemd's, which the default prefers


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




@pytest.fixture
def app(corpus, make_app):
    """The app over `corpus`, first scan done, no scheduler."""
    return make_app(corpus)


@pytest.fixture
def client(app):
    """Flask's test client of `app`."""
    return app.test_client()
