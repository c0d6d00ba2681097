"""`syndicator serve | check | topics | build | deploy`: wires settings, scanning, rendering and serving."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any

from .config import SETTINGS, ConfigError, Settings, check_required, load_settings, settings_of

log = logging.getLogger("syndicator")
# Request threads per worker process, under either server: requests are short and answered from memory,
# but a slow reader must not hold a whole process; threads share the worker's snapshot.
THREADS = 4


def _add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    for s in settings_of(command):
        # Strings here: the settings table converts and checks every value the same way, from a flag, the
        # environment or the config file, and its errors name the setting and the allowed values.
        # A boolean flag alone means true (`--export-last-good`); it also takes a value (`--fs-events off`).
        boolean: dict[str, Any] = {"nargs": "?", "const": "true"} if s.kind is bool else {}
        parser.add_argument(s.flag, dest=s.name, default=None, metavar=s.metavar or s.kind.__name__.upper(),
                            help=f"{s.help} (default: {s.default!r}; env {s.env})", **boolean)
    if any(command in s.required_by for s in SETTINGS):
        # Required, but it may come from the environment or the config file: argparse cannot know, so
        # the usage line says it and check_required enforces it.
        usage = parser.format_usage().removeprefix("usage: ").strip()
        for s in settings_of(command):
            if command in s.required_by:
                usage = usage.replace(f"[{s.flag} {s.metavar}]", f"{s.flag} {s.metavar}")
        parser.usage = usage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syndicator", description="Topic feeds from a content directory.")
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "serve": "serve the feeds over HTTP (gunicorn or granian)",
        "check": "list every problem in the content directory; exit 1 if any",
        "topics": "print slug, item count, name and item count per kind of every topic",
        "build": "write every feed, page and OPML as static files (plus .gz)",
        "deploy": "upload what changed in a static export to object storage (S3 API), then delete what it "
                  "no longer has",
    }
    commands = {}
    for command in ("serve", "check", "topics", "build", "deploy"):
        commands[command] = p = sub.add_parser(command, help=helps[command], description=helps[command])
        p.add_argument("--config", default=None, metavar="FILE", help="YAML file of settings (env SYNDICATOR_CONFIG)")
        if command == "check":
            p.add_argument("--format", choices=("text", "json"), default="text",
                           help="text: one 'PATH: reason' line per problem and a summary on stderr; json: one "
                                "object with items, topics and problems (default: text)")
        if command == "build":
            p.add_argument("--out", required=True, metavar="PATH",
                           help="output path: a symlink swapped atomically to each build")
            p.add_argument("--watch", action="store_true", help="keep rebuilding after every change")
        if command == "deploy":
            p.add_argument("--from", dest="export", required=True, metavar="EXPORT_DIR",
                           help="the export to deploy: the --out of `syndicator build`")
            p.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX", help="where it goes")
            p.add_argument("--dry-run", action="store_true",
                           help="list what would be uploaded and deleted, with each object's headers; change nothing")
            p.add_argument("--force", action="store_true", help="delete even more than --max-deletes objects")
        _add_setting_flags(p, command)
    return parser


def _scan(settings: Settings):
    from .scheduler import make_scanner
    from .snapshot import build_snapshot

    # The files as they are now, whatever a server's cache keeps of their last good versions; the cache
    # is only read: a one-shot judgement must not change what a server restarts with.
    return build_snapshot(make_scanner(settings, autosave=False, last_good=False).scan())


def cmd_check(settings: Settings, fmt: str) -> int:
    snapshot = _scan(settings)
    if fmt == "json":
        print(json.dumps({"items": len(snapshot.all_items), "topics": len(snapshot.topics),
                          "problems": [{"path": p.path, "reason": p.reason} for p in snapshot.problems]},
                         ensure_ascii=False, indent=1))
    else:
        for p in snapshot.problems:
            print(f"{p.path}: {p.reason}")
        print(f"{len(snapshot.all_items)} items, {len(snapshot.topics)} topics, "
              f"{len(snapshot.problems)} problems", file=sys.stderr)
    return 1 if snapshot.problems else 0


def cmd_topics(settings: Settings) -> int:
    snapshot = _scan(settings)
    width = max((len(slug) for slug in snapshot.topics), default=4)
    from .documents import kind_counts

    for topic in snapshot.topics.values():
        # Each kind has its own feeds (/feeds/<slug>/<kind>.rss); a subtopic names its parent.
        per_kind = ", ".join(f"{kind} {n}" for kind, n in kind_counts(snapshot, topic.slug))
        parent = f"  (in {topic.parent})" if topic.parent else ""
        print(f"{topic.slug:<{width}}  {len(topic.items):>6}  {topic.name}  [{per_kind}]{parent}")
    return 0


def cmd_build(settings: Settings, out: str, watch: bool) -> int:
    from .export import build

    if settings.deploy:
        from .deploy import deploy, follow
        from .objects import Target

        Target.parse(settings.deploy)  # a wrong URL stops the build before it starts, not after
        # deploy pings the hub once the changed feeds are live in the bucket; a ping at the swap would
        # have the hub fetch the old bytes.
        if watch:
            follow(out, settings.deploy, settings)
            return build(settings, out, watch=True, ping=False)
        code = build(settings, out, ping=False)
        return code if code else deploy(out, settings.deploy, settings)
    return build(settings, out, watch=watch)


def cmd_serve(settings: Settings) -> int:
    log.info("serving %s on http://%s:%d/ with %d %s workers", settings.content, settings.host, settings.port,
             settings.workers, settings.server)
    from .metrics import private_directory

    # Made before the app and the workers: each worker counts requests into its own file there, and a
    # scrape of any worker sums them all (metrics.py). One per server start, so no count of another
    # server or of an earlier run is ever added in.
    with private_directory() as metrics_dir:
        if settings.server == "granian":
            return _serve_granian(settings, metrics_dir)
        return _serve_gunicorn(settings, metrics_dir)


def _serve_gunicorn(settings: Settings, metrics_dir: str) -> int:
    from gunicorn.app.base import BaseApplication

    from .metrics import process_exited
    from .web import create_app
    from .wsgi import finish_cache_write, start_rescans

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", THREADS)
            self.cfg.set("accesslog", "-")
            self.cfg.set("loglevel", settings.log_level.lower())
            # The first scan (parallel, all cores) runs once in the master; the workers inherit the
            # snapshot through fork instead of each parsing everything again.
            self.cfg.set("preload_app", True)
            self.cfg.set("post_worker_init", self.start_rescans)
            # A parse-cache write still pending (or running) at shutdown is finished first, in the master
            # and in each worker, so that the next start is warm.
            self.cfg.set("on_exit", lambda server: finish_cache_write(self.app))
            self.cfg.set("worker_exit", lambda server, worker: finish_cache_write(self.app))
            # In the master, for every worker gone, however it ended (even SIGKILL).
            self.cfg.set("child_exit", lambda server, worker: process_exited(metrics_dir, worker.pid))
            # gunicorn would otherwise trust X-Forwarded-Proto from 127.0.0.1 on its own; whether any
            # forwarded header counts is trusted_proxies' decision alone (ProxyFix in web.py).
            self.cfg.set("secure_scheme_headers", {})
            self.cfg.set("forwarded_allow_ips", "")
            # gunicorn 25's control socket (for its gunicornc tool) lives in $HOME/.gunicorn unless
            # XDG_RUNTIME_DIR is set: under DynamicUser= or in the container HOME is not writable, and it
            # logged an error at every start. serve is controlled by signals (HUP, TERM) instead.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            self.app = create_app(settings, schedule=False, metrics_dir=metrics_dir)
            return self.app

        def start_rescans(self, worker):
            # Each worker rescans on its own from the inherited scanner state: no reparse, and output is
            # deterministic, so every worker serves the same bytes and ETags.
            start_rescans(self.app, slot=worker.age - 1)  # gunicorn counts the workers it starts from 1

    Server().run()
    return 0


def _serve_granian(settings: Settings, metrics_dir: str) -> int:
    """`serve` under granian, in the shape it has under gunicorn: the first scan in the parent, workers
    forked with its snapshot that rescan on their own, a pending cache write finished when each stops."""
    try:
        from granian.constants import Interfaces
        from granian.log import LogLevels
        from granian.server.mp import MPServer
    except ImportError:
        print("syndicator: server granian is not installed: pip install 'syndicator[granian]'", file=sys.stderr)
        return 2
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":  # spawned workers could not inherit the snapshot
        print(f"syndicator: server granian needs fork()ed workers; this Python starts processes by "
              f"{multiprocessing.get_start_method()}", file=sys.stderr)
        return 2
    from .metrics import process_exited
    from .web import create_app
    from .wsgi import finish_cache_write, start_rescans

    app = create_app(settings, schedule=False, metrics_dir=metrics_dir)
    slot = reloads = 0

    def reloading():
        # In the main process, before a reload (HUP) forks replacement workers: they must catch up at once.
        nonlocal reloads
        reloads += 1

    def run_worker(worker_id: int, *args, **kwargs):
        # granian's own worker entry point, run in the forked worker. Its number (from 1) and the reloads
        # before it say how many workers were started before it; once it has stopped serving, a
        # parse-cache write it has pending is done.
        nonlocal slot
        # The fork inherits the main process's TERM/INT handlers, which only flag the main's own copy of
        # the server: a stop arriving before granian sets the worker's handlers (while the worker starts)
        # was swallowed, the worker lived on and the main waited for it for ever. Until then a stop ends
        # the worker outright: it has served nothing and has no cache write pending after the fork.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        slot = reloads * settings.workers + worker_id - 1
        try:
            return MPServer._spawn_wsgi_worker(worker_id, *args, **kwargs)
        finally:
            finish_cache_write(app)
            # granian has no hook in the main process when a worker ends (only startup, reload and
            # shutdown), so the worker marks itself on its way out; a killed one cannot, and then granian
            # stops the whole server anyway (it respawns no failed worker).
            process_exited(metrics_dir, os.getpid())

    def load_app():
        # In the worker, where granian would import its target: the app the parent built, with rescans.
        start_rescans(app, slot=slot)
        return app

    server = MPServer("syndicator.wsgi:application", address=settings.host, port=settings.port,
                      interface=Interfaces.WSGI, workers=settings.workers, blocking_threads=THREADS,
                      websockets=False, log_access=True, log_level=LogLevels(settings.log_level.lower()),
                      # As gunicorn's graceful_timeout: a worker still running 30 s after a stop is killed.
                      # Without it the main process waits for ever for a worker that missed the stop (one
                      # that got it after granian set its handlers but before serving: granian loses it).
                      workers_kill_timeout=30)
    server.on_reload(reloading)
    try:
        server.serve(spawn_target=run_worker, target_loader=load_app, wrap_loader=False)
    finally:
        finish_cache_write(app)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, overrides=vars(args))
        check_required(settings, args.command)
        if args.command != "deploy" and not settings.content_path.is_dir():
            raise ConfigError(f"content: directory {settings.content} does not exist or is not a directory "
                              "(set by --content, SYNDICATOR_CONTENT or 'content:' in the config file)")
    except ConfigError as exc:
        print(f"syndicator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .export import ExportError
    from .listing import ScanError
    from .objects import DeployError

    try:
        if args.command == "check":
            return cmd_check(settings, args.format)
        if args.command == "topics":
            return cmd_topics(settings)
        if args.command == "serve":
            return cmd_serve(settings)
        if args.command == "deploy":
            from .deploy import deploy

            return deploy(args.export, args.to, settings, dry_run=args.dry_run, force=args.force)
        if args.command == "build":
            return cmd_build(settings, args.out, args.watch)
    except (ScanError, ExportError, DeployError) as exc:
        print(f"syndicator: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
