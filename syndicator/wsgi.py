"""WSGI entry point for running gunicorn (or another WSGI server) directly: `syndicator.wsgi:application()`.

Settings come from SYNDICATOR_* variables (and SYNDICATOR_CONFIG), read when the factory is called,
not at import. `syndicator serve` does the same with its own flags; deploy/gunicorn.conf.py shows how.
PROMETHEUS_MULTIPROC_DIR, prometheus_client's own variable for it, names the directory in which every
worker counts its requests for /metrics (the config file makes a private one); without it, each process
reports only its own requests.
"""

from __future__ import annotations

import os

from flask import Flask

from .config import load_settings
from .web import app_state, create_app


def application() -> Flask:
    """Build the app and run the first scan; the caller starts rescans (`start_rescans`) per process."""
    return create_app(load_settings(), metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)


def start_rescans(app: Flask, slot: int = 0) -> None:
    """Start the periodic and event-driven rescans in this process (after any fork); `slot`, the number of
    workers the server started before this one (gunicorn's worker.age - 1), staggers the workers'
    rescans across the interval, and a replacement worker rescans at once."""
    rescanner = app_state(app).rescanner
    if rescanner is not None:
        rescanner.start(slot=slot)


def finish_cache_write(app: Flask | None) -> None:
    """At shutdown: stop this process's rescans, then write the parse cache now if a write is pending, so
    that the next start is warm (and wait for a write already running). Stopped first because the
    scheduler's thread would otherwise go on firing while the interpreter shuts down, and log an error
    ("cannot schedule new futures after interpreter shutdown")."""
    if app is not None:
        rescanner = app_state(app).rescanner
        if rescanner is not None:
            rescanner.stop()
            rescanner.flush()
