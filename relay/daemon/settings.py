"""The daemon's settings: flags win over `RELAY_*` variables, which win over a TOML file.

Every option has one name: `--batch-size` on the command line, `RELAY_BATCH_SIZE` in the
environment, `batch_size` in the file. The options are the fields of `Config` and `Settings` whose
metadata has a `help`, their defaults shown from the fields. Each value is checked here, and a bad
one becomes a `ConfigError` naming the option.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..backoff import Backoff
from ..config import Config, option_field, resolve_dsn
from ..errors import ConfigError
from ..sinks import SinkOptions

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


def _one_of(choices: tuple[str, ...]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


def _non_negative(value: float) -> None:
    if value < 0:
        raise ConfigError("grace_period", f"must be >= 0, got {value!r}")


_SINK = SinkOptions()  # the sink options' defaults are the sinks' own


@attrs.frozen
class Settings:
    """All `relay run` needs: the relay's `Config` and the daemon's own options."""

    config: Config
    sink: str = option_field(
        "stdout",
        "where events go: stdout, http(s)://..., nats://..., redis(s)://..., amqp(s)://...,"
        " python:module:callable",
        repr=False,  # a broker URL may hold a password
    )
    grace_period: float = option_field(
        10.0, "seconds the in-flight batch gets on SIGTERM", lambda _, __, v: _non_negative(v)
    )
    webhook_secret: str | None = option_field(
        _SINK.secret, "HMAC-SHA256 secret for webhook signatures", repr=False, kind=str, secret=True
    )
    sink_timeout: float = option_field(_SINK.timeout, "seconds per request or publish to the sink")
    sink_concurrency: int = option_field(
        _SINK.max_concurrency, "sink requests in flight across keys"
    )
    log_level: str = option_field("info", _one_of(LOG_LEVELS), choices=LOG_LEVELS)
    log_format: str = option_field("text", _one_of(LOG_FORMATS), choices=LOG_FORMATS)
    metrics_addr: tuple[str, int] | None = option_field(
        None, "HOST:PORT to serve /metrics, /healthz and /readyz", kind=_address
    )


def _option(name: str, kind: Any, metadata: Mapping[str, Any], default: Any) -> Option:
    shown = f"{default:g}" if isinstance(default, float) else default
    return Option(
        name,
        metadata.get("kind", kind),
        metadata["help"] + ("" if default is None else f" (default: {shown})"),
        metadata.get("choices"),
        metadata.get("secret", False),
    )


def _options(cls: type, defaults: Any) -> Iterator[Option]:
    """The options the fields of `cls` declare, with their defaults as `defaults` has them."""
    for field in attrs.fields(attrs.resolve_types(cls)):
        default = getattr(defaults, field.name)
        if "help" in field.metadata:
            yield _option(field.name, field.type, field.metadata, default)
        for part, help in field.metadata.get("parts", {}).items():
            kind = attrs.fields_dict(attrs.resolve_types(type(default)))[part].type
            yield _option(f"{field.name}_{part}", kind, {"help": help}, getattr(default, part))


_DEFAULTS = Settings(Config())
RUN_OPTIONS = (*_options(Config, _DEFAULTS.config), *_options(Settings, _DEFAULTS))


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
    backoffs: dict[str, Any] = {name: _backoff(name, values) for name in _BACKOFFS}
    config = Config(dsn=dsn, **backoffs, **_fields_of(Config, values))
    return Settings(config=config, **_fields_of(Settings, values))


def _fields_of(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    fields = attrs.fields_dict(cls)
    return {name: value for name, value in values.items() if name in fields}


# The `Backoff` fields whose parts are options (`retry_backoff_base`, `outage_backoff_cap`, ...).
_BACKOFFS = tuple(f.name for f in attrs.fields(Config) if "parts" in f.metadata)


def _backoff(name: str, values: Mapping[str, Any]) -> Backoff:
    default: Backoff = getattr(_DEFAULTS.config, name)
    base = values.get(f"{name}_base", default.base)
    cap = values.get(f"{name}_cap", default.cap)
    try:
        cap = max(cap, base) if f"{name}_cap" not in values else cap
        return attrs.evolve(default, base=base, cap=cap)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None
