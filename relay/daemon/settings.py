"""The daemon's settings: flags win over `RELAY_*` variables, which win over a TOML file.

Every option has one name: `--batch-size` on the command line, `RELAY_BATCH_SIZE` in the
environment, `batch_size` in the file. Each value is checked here, and a bad one becomes a
`ConfigError` naming the option.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..backoff import Backoff
from ..config import Config, resolve_dsn
from ..errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class Option:
    name: str
    kind: Callable[[str], Any]
    help: str
    choices: tuple[str, ...] | None = None
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "RELAY_" + self.name.upper()


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT")
    return host.strip("[]"), int(port)


RUN_OPTIONS: tuple[Option, ...] = (
    Option("schema", str, "the outbox schema (default: relay)"),
    Option(
        "sink",
        str,
        "where events go: stdout, http(s)://..., nats://..., redis(s)://..., amqp(s)://...,"
        " python:module:callable",
    ),
    Option("batch_size", int, "events claimed per transaction (default: 500)"),
    Option("poll_interval", float, "seconds between fallback polls (default: 5)"),
    Option("max_attempts", int, "deliveries before an event is dead (default: 10)"),
    Option("retry_backoff_base", float, "first retry delay in seconds (default: 1)"),
    Option("retry_backoff_cap", float, "longest retry delay in seconds (default: 300)"),
    Option("delivery_timeout", float, "seconds a batch may spend in the sink (default: 30)"),
    Option("restart_intensity", int, "restarts allowed per period before giving up (default: 10)"),
    Option("restart_period", float, "seconds over which restarts are counted (default: 60)"),
    Option("grace_period", float, "seconds the in-flight batch gets on SIGTERM (default: 10)"),
    Option("webhook_secret", str, "HMAC-SHA256 secret for webhook signatures", secret=True),
    Option("sink_timeout", float, "seconds per request or publish to the sink (default: 10)"),
    Option("sink_concurrency", int, "sink requests in flight across keys (default: 16)"),
    Option("log_level", str, "debug, info, warning or error (default: info)", LOG_LEVELS),
    Option("log_format", str, "text or json (default: text)", LOG_FORMATS),
    Option("metrics_addr", _address, "HOST:PORT to serve /metrics, /healthz and /readyz"),
)


@attrs.frozen
class Settings:
    """All `relay run` needs: the relay's `Config` and the daemon's own options."""

    config: Config
    sink: str = attrs.field(default="stdout", repr=False)  # a broker URL may hold a password
    grace_period: float = attrs.field(default=10.0, validator=lambda _, __, v: _non_negative(v))
    webhook_secret: str | None = attrs.field(default=None, repr=False)
    sink_timeout: float = 10.0
    sink_concurrency: int = 16
    log_level: str = "info"
    log_format: str = "text"
    metrics_addr: tuple[str, int] | None = None


def _non_negative(value: float) -> None:
    if value < 0:
        raise ConfigError("grace_period", f"must be >= 0, got {value!r}")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add `--config` and one flag per option; defaults stay None so unset flags are known."""
    parser.add_argument("--config", type=Path, help="a TOML file of options (flags win)")
    for option in RUN_OPTIONS:
        parser.add_argument(option.flag, dest=option.name, help=option.help, default=None)


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    known = {option.name for option in RUN_OPTIONS} | {"dsn"}
    for name in data:
        if name not in known:
            raise ConfigError(name, f"unknown option in {path}")
    return data


_EXPECTED: dict[Any, str] = {int: "an integer", float: "a number", str: "a string"}


def _convert(kind: Callable[[str], Any], raw: Any) -> Any:
    if isinstance(raw, bool):
        raise ValueError
    if kind is str:
        if not isinstance(raw, str):
            raise ValueError
        return raw
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError
    if kind in (int, float) and isinstance(raw, int | float):
        return kind(raw)
    if not isinstance(raw, str):
        raise ValueError
    return kind(raw)


def _value(option: Option, raw: Any, source: str) -> Any:
    try:
        value = _convert(option.kind, raw)
    except ValueError as exc:
        own_words = str(exc) if str(exc) and "invalid literal" not in str(exc) else ""
        reason = own_words or f"must be {_EXPECTED.get(option.kind, 'valid')}"
        shown = "***" if option.secret else repr(raw)
        raise ConfigError(option.name, f"{reason}, got {shown} (from {source})") from None
    if option.choices and value not in option.choices:
        raise ConfigError(option.name, f"must be one of {', '.join(option.choices)}, got {value!r}")
    return value


def load_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `args` (parsed with `add_run_options`), the environment and the file."""
    env = os.environ if environ is None else environ
    config_path = args.config or (Path(env["RELAY_CONFIG"]) if env.get("RELAY_CONFIG") else None)
    file = _read_file(config_path)
    values: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        flag = getattr(args, option.name, None)
        if flag is not None:
            values[option.name] = _value(option, flag, option.flag)
        elif option.env in env:
            values[option.name] = _value(option, env[option.env], option.env)
        elif option.name in file:
            values[option.name] = _value(option, file[option.name], str(config_path))
    dsn = resolve_dsn(getattr(args, "dsn", None), env) or str(file.get("dsn", ""))
    config = Config(
        dsn=dsn,
        **{
            k: values[k]
            for k in (
                "schema",
                "batch_size",
                "poll_interval",
                "max_attempts",
                "delivery_timeout",
                "restart_intensity",
                "restart_period",
            )
            if k in values
        },
        retry_backoff=_backoff(values),
    )
    return Settings(
        config=config,
        **{
            k: values[k]
            for k in (
                "sink",
                "grace_period",
                "webhook_secret",
                "sink_timeout",
                "sink_concurrency",
                "log_level",
                "log_format",
                "metrics_addr",
            )
            if k in values
        },
    )


def _backoff(values: Mapping[str, Any]) -> Backoff:
    default = Backoff()
    base = values.get("retry_backoff_base", default.base)
    cap = values.get("retry_backoff_cap", default.cap)
    try:
        return Backoff(base=base, cap=max(cap, base) if "retry_backoff_cap" not in values else cap)
    except ValueError as exc:
        raise ConfigError("retry_backoff", str(exc)) from None
