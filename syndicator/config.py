"""Settings: one table of every setting, read from defaults < YAML file < SYNDICATOR_* env < CLI flags.

The table is the `Settings` dataclass: each field is one setting, declared once with its default, help,
check and the commands that take it; the CLI flags, the environment and file readers and the README's
table derive from it. Nothing here runs at import time; callers build a `Settings` with `load_settings()`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
ENV_PREFIX = "SYNDICATOR_"
# SYNDICATOR_* variables that are not settings: the config file's path, and the test suite's switch that
# refreshes the README's screenshots.
OTHER_VARIABLES = frozenset({"CONFIG", "UPDATE_DOCS"})
COMMANDS = ("serve", "build", "check", "topics")  # the commands that read a content directory
SERVERS = ("gunicorn", "granian")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# YAML 1.1's booleans (what PyYAML reads in the config file), for the environment and flags too.
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n"})


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting and where it came from."""


Check = Callable[[Any], Any]  # a value of the setting's kind -> the value to use; raises ValueError


@dataclass(frozen=True)
class Setting:
    """One row of the settings table (a field of `Settings`)."""

    name: str
    default: Any
    kind: type  #: str, int or bool
    help: str
    commands: tuple[str, ...]  #: the commands that take it as a flag
    check: Check | None = None  #: validates (and may normalise) a value; its ValueError is the reason
    required_by: tuple[str, ...] = ()  #: commands that refuse to run without it
    metavar: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _setting(default: Any, help: str, *, commands: tuple[str, ...] = COMMANDS, check: Check | None = None,
             required_by: tuple[str, ...] = (), metavar: str = "") -> Any:
    return dataclasses.field(default=default, metadata={"setting": dict(
        help=help, commands=commands, check=check, required_by=required_by, metavar=metavar)})


def at_least(minimum: int, maximum: int | None = None) -> Check:
    """A check that an integer lies in [minimum, maximum] (no upper bound when None)."""
    def check(value: int) -> int:
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"must be {allowed}, got {value}")
        return value
    return check


def one_of(*choices: str, upper: bool = False) -> Check:
    """A check that a string is one of `choices` (compared case-insensitively)."""
    def check(value: str) -> str:
        text = value.upper() if upper else value.lower()
        if text not in choices:
            raise ValueError(f"must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")
        return text
    return check


def http_url(*, strip_slash: bool = True) -> Check:
    """A check that a string is empty or an http(s) URL; links are built as base + "/feeds/...", so a
    trailing slash is dropped unless the URL must be used exactly as given."""
    def check(value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/") if strip_slash else value
    return check


def ip_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a list of addresses and CIDR networks separated by commas or spaces."""
    return tuple(ipaddress.ip_network(part) for part in value.replace(",", " ").split())


def networks(value: str) -> str:
    """A check that a string lists IP networks (an address is its own /32 or /128); normalised, so the
    help and errors show what is meant (10.0.0.1 is 10.0.0.1/32)."""
    try:
        return ", ".join(map(str, ip_networks(value)))
    except ValueError as exc:  # host bits set (10.1.2.3/8), or no address at all
        raise ValueError(f"must be IP addresses or networks such as 10.0.0.0/8, ::1: {exc}") from None


def s3_url(value: str) -> str:
    """A check that a string is empty or an s3://BUCKET[/PREFIX] URL."""
    if value and not value.startswith("s3://"):
        raise ValueError(f"must be an s3://BUCKET/PREFIX URL, got {value!r}")
    return value


SERVE = ("serve",)
SERVE_BUILD = ("serve", "build")
SERVE_BUILD_DEPLOY = ("serve", "build", "deploy")
# `deploy`, and `build --deploy`, which deploys after a successful build.
BUILD_DEPLOY = ("build", "deploy")


@dataclass(frozen=True)
class Settings:
    """Every setting of one running service. Build with `load_settings()`."""

    content: str = _setting("content", "content directory holding the *.md items and topics/*.yaml",
                            metavar="DIR")
    host: str = _setting("127.0.0.1", "address `serve` listens on", commands=SERVE, metavar="HOST")
    port: int = _setting(8080, "port `serve` listens on", commands=SERVE, check=at_least(1, 65535))
    base_url: str = _setting("", "public URL of the service (e.g. https://example.org/feeds-app); "
                             "wins over request headers for self links", commands=SERVE_BUILD_DEPLOY,
                             check=http_url(), required_by=("build",), metavar="URL")
    site_url: str = _setting("", "URL that relative links in the content (/assets/...) resolve against; "
                             "without it such links are dropped", check=http_url(), metavar="URL")
    interval: int = _setting(60, "seconds between rescans of the content directory; also the feeds' max-age",
                             commands=SERVE_BUILD_DEPLOY, check=at_least(1), metavar="SECONDS")
    feed_limit: int = _setting(50, "newest items in each subscription feed", commands=SERVE_BUILD,
                               check=at_least(1))
    title: str = _setting("syndicator", "site title shown in feeds and pages", commands=SERVE_BUILD)
    logo_url: str = _setting("", "the site's logo: the image of feeds whose topic has none of its own",
                             commands=SERVE_BUILD, check=http_url(strip_slash=False), metavar="URL")
    icon_url: str = _setting("", "the site's icon: Atom icon and JSON Feed favicon, shown beside a feed's name",
                             commands=SERVE_BUILD, check=http_url(strip_slash=False), metavar="URL")
    related_limit: int = _setting(10, "related links shown per entry in feeds and pages (the first, as listed)",
                                  commands=SERVE_BUILD, check=at_least(0))
    workers: int = _setting(2, "worker processes of `serve`", commands=SERVE, check=at_least(1))
    trusted_proxies: int = _setting(0, "number of reverse proxies whose X-Forwarded-* headers are trusted",
                                    commands=SERVE, check=at_least(0))
    ops_networks: str = _setting("127.0.0.0/8, ::1/128", "client networks that may read /status, /metrics "
                                 "and /healthz's reason (others get 403, and only ok or degraded); judged "
                                 "on the address trusted_proxies yields; '0.0.0.0/0, ::/0' for anyone, "
                                 "empty for nobody", commands=SERVE, check=networks, metavar="NETWORKS")
    hub_url: str = _setting("", "WebSub hub to advertise and ping after feeds change", commands=SERVE_BUILD_DEPLOY,
                            check=http_url(strip_slash=False), metavar="URL")
    max_file_bytes: int = _setting(1_048_576, "largest item file read; larger files are reported",
                                   check=at_least(1), metavar="BYTES")
    log_level: str = _setting("INFO", "logging level (DEBUG, INFO, WARNING, ERROR)", commands=SERVE_BUILD_DEPLOY,
                              check=one_of(*LOG_LEVELS, upper=True), metavar="LEVEL")
    cache_dir: str = _setting("", "where the parse cache lives (default: $CACHE_DIRECTORY, which systemd's "
                              "CacheDirectory= sets, else $XDG_CACHE_HOME/syndicator or ~/.cache/syndicator); "
                              "'off' disables it", commands=COMMANDS, metavar="DIR")
    parse_workers: int = _setting(0, "processes that parse files on a cold start (0: one per CPU core)",
                                  commands=SERVE_BUILD, check=at_least(0))
    fs_events: bool = _setting(True, "true: rescan within a second of a change when filesystem events are "
                               "available (inotify via watchdog); false: only every interval",
                               commands=SERVE_BUILD)
    export_last_good: bool = _setting(False, "export a broken file's last good version, as serve keeps serving "
                                      "it (each one is reported); default: export the files as they are now",
                                      commands=("build",))
    server: str = _setting("gunicorn", "HTTP server of `serve`: gunicorn, or granian (faster from memory; "
                           "pip install 'syndicator[granian]')", commands=SERVE, check=one_of(*SERVERS))
    deploy: str = _setting("", "after a successful build, deploy the export to this s3://BUCKET/PREFIX "
                           "(as `syndicator deploy` does)", commands=("build",), check=s3_url, metavar="URL")
    endpoint_url: str = _setting("", "S3 API endpoint of a store other than AWS (MinIO, moto, ...); default: "
                                 "AWS's, or AWS_ENDPOINT_URL", commands=BUILD_DEPLOY,
                                 check=http_url(strip_slash=False), metavar="URL")
    profile: str = _setting("", "AWS profile (~/.aws/config) whose credentials deploy uses; default: the "
                            "usual chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, the files, an instance role)",
                            commands=BUILD_DEPLOY, metavar="NAME")
    max_deletes: int = _setting(256, "most objects a deploy deletes; above it nothing is changed unless "
                                "`deploy --force`", commands=BUILD_DEPLOY, check=at_least(0))
    gzip: bool = _setting(False, "deploy the gzip bytes under each plain name with Content-Encoding: gzip "
                          "(smaller transfers; every client then gets gzip, see README)", commands=BUILD_DEPLOY)

    def __post_init__(self) -> None:
        # Links are built as base_url + "/feeds/...", so a trailing slash would double up.
        for name in ("base_url", "site_url"):
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))

    @property
    def content_path(self) -> Path:
        return Path(self.content)

    @property
    def cache_file(self) -> Path | None:
        """The parse cache of this content directory, or None when caching is off."""
        if self.cache_dir == "off":
            return None
        import hashlib

        base = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        key = hashlib.sha256(os.path.realpath(self.content).encode()).hexdigest()[:16]
        return base / f"parse-{key}.pickle"

    @property
    def workers_for_parsing(self) -> int:
        return self.parse_workers or os.cpu_count() or 1


def default_cache_dir() -> Path:
    """The parse cache's directory when cache_dir is not set: the one systemd made for the service
    (CacheDirectory= sets $CACHE_DIRECTORY, whatever HOME is), else the user's cache directory."""
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syndicator"


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name=f.name, default=f.default, kind=type(f.default), **f.metadata["setting"])
    for f in dataclasses.fields(Settings))
_BY_NAME = {s.name: s for s in SETTINGS}


def settings_of(command: str) -> tuple[Setting, ...]:
    """The settings `command` takes as flags, in table order."""
    return tuple(s for s in SETTINGS if command in s.commands)


def _coerce(name: str, value: Any, source: str) -> Any:
    """`value` (from a file, the environment or a flag) as the setting's kind, checked by its row."""
    setting = _BY_NAME[name]
    if setting.kind is bool:
        if isinstance(value, bool):
            result: Any = value
        elif isinstance(value, int) and value in (0, 1):
            result = bool(value)
        elif isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            result = value.strip().lower() in _TRUE
        else:
            raise ConfigError(f"{source}: {name} must be true or false (or yes/no, on/off, 1/0), got {value!r}")
    elif setting.kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
        try:
            result = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}") from None
    else:
        if value is None:
            value = ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{source}: {name} must be a string, got {type(value).__name__}")
        result = str(value).strip()
    if setting.check is not None:
        try:
            result = setting.check(result)
        except ValueError as exc:
            raise ConfigError(f"{source}: {name} {exc}") from None
    return result


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file whose keys are setting names; unknown keys are an error."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting: value")
    unknown = sorted(set(map(str, data)) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(_BY_NAME)}")
    return {k: _coerce(k, v, f"config file {path}") for k, v in data.items()}


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """SYNDICATOR_* variables that name no setting (a misspelt one is otherwise silently ignored)."""
    known = {s.env for s in SETTINGS} | {ENV_PREFIX + name for name in OTHER_VARIABLES}
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the config file, SYNDICATOR_* variables and explicit overrides (CLI flags).

    `config_file` may also come from SYNDICATOR_CONFIG. `overrides` with value None are ignored,
    so argparse namespaces can be passed through unchanged. Unknown SYNDICATOR_* variables are logged
    as warnings.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    if config_file:
        values.update(read_config_file(config_file))
    for name in unknown_variables(env):
        log.warning("environment %s is not a setting and is ignored; settings: %s", name,
                    ", ".join(s.env for s in SETTINGS))
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is not None and raw != "":
            values[setting.name] = _coerce(setting.name, raw, f"environment {setting.env}")
    for name, value in (overrides or {}).items():
        if value is not None and name in _BY_NAME:
            values[name] = _coerce(name, value, _BY_NAME[name].flag)
    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Checks that involve more than one setting, and those of values given to `Settings` directly."""
    try:
        networks(settings.ops_networks)
    except ValueError as exc:
        raise ConfigError(f"ops_networks {exc}") from None
    if settings.hub_url and not settings.base_url:
        raise ConfigError("hub_url needs base_url: the hub must be told the feeds' public URLs")


def check_required(settings: Settings, command: str) -> None:
    """The settings `command` cannot run without, named with every way to give them."""
    for setting in SETTINGS:
        if command in setting.required_by and not getattr(settings, setting.name):
            raise ConfigError(f"{command} needs {setting.name}: give {setting.flag}, {setting.env} or "
                              f"'{setting.name}:' in the config file")
