"""gunicorn settings for syndicator behind nginx (deploy/nginx-proxy.conf).

`syndicator serve` sets the same values itself (syndicator/cli.py) and does not read this file. Use it to
run gunicorn's own command line instead: `gunicorn -c deploy/gunicorn.conf.py` (the app is named below),
and change a value here together with cli.py.
Host, port, workers and log level follow the same SYNDICATOR_* variables as `syndicator serve`, so one
env file (/etc/syndicator/env) configures both.
"""

import os
import tempfile

# Loopback only: readers reach the app through nginx, which adds the cache, gzip and TLS.
bind = f"{os.environ.get('SYNDICATOR_HOST', '127.0.0.1')}:{os.environ.get('SYNDICATOR_PORT', '8080')}"

# Each worker runs its own rescan scheduler (APScheduler) after the shared first scan. That is
# safe: output is deterministic, so every worker serves the same bytes and ETags, and a rescan that
# finds no change only stats files. A worker may lag another by up to one interval after an edit.
workers = int(os.environ.get("SYNDICATOR_WORKERS", "2"))

# Requests are short and mostly answered from memory, but a slow reader must not hold a whole
# process: threads share a worker's snapshot, so they cost no extra memory or scans.
worker_class = "gthread"
threads = 4

# A feed is rendered in milliseconds; a request still running after 30 s is stuck. nginx's
# proxy_read_timeout (35 s) is just above this, so nginx reports the timeout, not a reset.
timeout = 30
graceful_timeout = 30
# Idle keep-alive connections from nginx are closed after 2 s; nginx's upstream keepalive_timeout (1 s)
# is shorter, so nginx drops a connection before gunicorn can close it under a request.
keepalive = 2

# Access lines to stdout, errors to stderr: systemd's journal or the container runtime collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("SYNDICATOR_LOG_LEVEL", "info").lower()

# gunicorn on its own believes X-Forwarded-Proto from loopback peers and flips the scheme to https, even
# when the app is told to trust no proxy (trusted_proxies 0), so a local client could turn self links into
# https ones. With no scheme headers, every X-Forwarded-* header is left to the app's ProxyFix, which trusts
# exactly --trusted-proxies hops.
secure_scheme_headers = {}
forwarded_allow_ips = ""

# No control socket (gunicorn 25+, for its gunicornc tool): it would live in $HOME/.gunicorn, which is not
# writable under the unit's DynamicUser= or in the container, and the service is driven by signals anyway.
control_socket_disable = True

# The app: the first scan (parallel, on every core) runs once in the master; workers inherit the
# snapshot through fork and then rescan on their own from the inherited state, without reparsing.
wsgi_app = "syndicator.wsgi:application()"
preload_app = True


# /metrics counts every worker's requests (README, Metrics): each worker writes its counts to a file in
# this directory and a scrape sums them. A private directory per server start, made here, before the app
# is loaded; gunicorn runs this file again on HUP, and the variable keeps the first directory.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="syndicator-metrics-")


def _clear_metrics():
    import glob

    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def on_starting(server):
    # Once, in the master, before any worker: counts of an earlier run, in a directory given from outside
    # (the one made above is empty), must not be added in.
    _clear_metrics()


def child_exit(server, worker):
    # In the master, for every worker gone, however it ended; its counts stay (syndicator/metrics.py).
    from syndicator.metrics import process_exited

    process_exited(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)


def on_exit(server):
    _clear_metrics()
    if os.path.basename(os.environ["PROMETHEUS_MULTIPROC_DIR"]).startswith("syndicator-metrics-"):
        os.rmdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])  # made above; one given from outside stays


def post_worker_init(worker):
    from syndicator.wsgi import start_rescans

    start_rescans(worker.wsgi, slot=worker.age - 1)  # gunicorn counts the workers it starts from 1


def worker_exit(server, worker):
    # A parse-cache write still pending after recent edits is done before the worker exits (in the
    # worker; gunicorn also calls this in the master for a worker already gone, which has no app).
    from syndicator.wsgi import finish_cache_write

    finish_cache_write(getattr(worker, "wsgi", None))
