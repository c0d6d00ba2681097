"""Settings: one table of every setting, read from defaults < YAML file < SYNDICATOR_* env < CLI flags.

Nothing here runs at import time; callers build a `Settings` with `load_settings()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    kind: type
    help: str
    flag: bool = True  # exposed as a CLI flag of `serve`/`build`


# The single source of truth for settings: the CLI, the env reader, the config file reader and the
# README's table are all derived from this list.
SETTINGS: tuple[Setting, ...] = (
    Setting("content", "content", str, "content directory holding the *.md items and topics/*.yaml"),
    Setting("host", "127.0.0.1", str, "address `serve` listens on"),
    Setting("port", 8080, int, "port `serve` listens on"),
    Setting("base_url", "", str, "public URL of the service (e.g. https://example.org/feeds-app); "
            "wins over request headers for self links"),
    Setting("site_url", "", str, "URL that relative links in the content (/assets/...) resolve against; "
            "without it such links are dropped"),
    Setting("interval", 60, int, "seconds between rescans of the content directory"),
    Setting("feed_limit", 50, int, "newest items in each subscription feed"),
    Setting("title", "syndicator", str, "site title shown in feeds and pages"),
    Setting("workers", 2, int, "worker processes of `serve`"),
    Setting("trusted_proxies", 0, int, "number of reverse proxies whose X-Forwarded-* headers are trusted"),
    Setting("hub_url", "", str, "WebSub hub to advertise and ping after feeds change"),
    Setting("max_file_bytes", 1_048_576, int, "largest item file read; larger files are reported"),
    Setting("log_level", "INFO", str, "logging level (DEBUG, INFO, WARNING, ERROR)"),
    Setting("cache_dir", "", str, "where the parse cache lives (default: $XDG_CACHE_HOME/syndicator or "
            "~/.cache/syndicator); 'off' disables it"),
    Setting("parse_workers", 0, int, "processes that parse files on a cold start (0: one per CPU core)"),
    Setting("fs_events", 1, int, "1: rescan within a second of a change when filesystem events are available "
            "(inotify via watchdog); 0: only every interval"),
    Setting("server", "gunicorn", str, "HTTP server of `serve`: gunicorn, or granian (faster from memory; "
            "pip install 'syndicator[granian]')"),
)
SERVERS = ("gunicorn", "granian")
_BY_NAME = {s.name: s for s in SETTINGS}
ENV_PREFIX = "SYNDICATOR_"


@dataclass(frozen=True)
class Settings:
    """Every setting of one running service. Build with `load_settings()`."""

    content: str = "content"
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""
    site_url: str = ""
    interval: int = 60
    feed_limit: int = 50
    title: str = "syndicator"
    workers: int = 2
    trusted_proxies: int = 0
    hub_url: str = ""
    max_file_bytes: int = 1_048_576
    log_level: str = "INFO"
    cache_dir: str = ""
    parse_workers: int = 0
    fs_events: int = 1
    server: str = "gunicorn"

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

        base = Path(self.cache_dir) if self.cache_dir else Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "syndicator"
        key = hashlib.sha256(os.path.realpath(self.content).encode()).hexdigest()[:16]
        return base / f"parse-{key}.pickle"

    @property
    def workers_for_parsing(self) -> int:
        return self.parse_workers or os.cpu_count() or 1



def _coerce(name: str, value: Any, source: str) -> Any:
    setting = _BY_NAME[name]
    if setting.kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}") from None
        minimum = 1 if name in {"interval", "feed_limit", "workers", "max_file_bytes", "port"} else 0
        if number < minimum or (name == "port" and number > 65535):
            raise ConfigError(f"{source}: {name} is out of range: {number}")
        return number
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise ConfigError(f"{source}: {name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if name in {"base_url", "site_url", "hub_url"} and text:
        if not text.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: {name} must be an http(s) URL, got {text!r}")
        if name != "hub_url":  # a hub's URL is used exactly as given
            text = text.rstrip("/")
    if name == "server":
        text = text.lower()
        if text not in SERVERS:
            raise ConfigError(f"{source}: server must be {' or '.join(SERVERS)}, got {value!r}")
    if name == "log_level":
        text = text.upper()
        if text not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"{source}: log_level must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return text


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


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the config file, SYNDICATOR_* variables and explicit overrides (CLI flags).

    `config_file` may also come from SYNDICATOR_CONFIG. `overrides` with value None are ignored,
    so argparse namespaces can be passed through unchanged.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    if config_file:
        values.update(read_config_file(config_file))
    for name in _BY_NAME:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, f"environment {ENV_PREFIX}{name.upper()}")
    for name, value in (overrides or {}).items():
        if value is not None and name in _BY_NAME:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Checks that involve more than one setting."""
    if settings.hub_url and not settings.base_url:
        raise ConfigError("hub_url needs base_url: the hub must be told the feeds' public URLs")
