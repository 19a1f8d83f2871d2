"""The daemon's settings: flags win over `RELAY_*` variables, which win over a TOML file.

Every option has one name: `--batch-size` on the command line, `RELAY_BATCH_SIZE` in the
environment, `batch_size` in the file. The options are the fields of `Config` and `Settings` whose
metadata has a `help`, their defaults shown from the fields. Each value is checked here, and a bad
one becomes a `ConfigError` naming the option.
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from ..backoff import Backoff
from ..config import DAY, Config, dsn_given, in_range, option_field, resolve_dsn
from ..errors import ConfigError
from ..secrets import url_origin
from ..sinks import SinkOptions
from ..sinks.cloudevents import FORMATS, check_source
from ..sinks.routes import CATCH_ALL, RouteSpec, check_routes, parse_route
from ..sinks.standard_webhooks import SCHEMES

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class Option:
    name: str
    kind: Callable[[str], Any]
    help: str
    choices: tuple[str, ...] | None = None
    secret: bool = False
    repeated: bool = False  # a flag given once per value; a list in the file; words in the env

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


_SINK = SinkOptions()  # the sink options' defaults are the sinks' own


@attrs.frozen
class Settings:
    """All `relay run` needs: the relay's `Config` and the daemon's own options."""

    config: Config
    sink: str = option_field(
        "stdout",
        "where events go: stdout, http(s)://..., nats://..., redis(s)://..., amqp(s)://...,"
        " python:module:callable; with --route, where the events no route takes go",
        repr=False,  # a broker URL may hold a password
    )
    route: tuple[RouteSpec, ...] = option_field(
        (),
        "PATTERN=URL, repeated: events whose topic matches PATTERN (NATS-style: orders.*,"
        " orders.>, > for all) go to that sink; the first match wins; give --sink or a last"
        " '>' route for the rest",
        kind=parse_route,
        repeated=True,
        repr=False,
    )
    # Whether `sink` was given (flag, variable or file) rather than defaulted: with routes, only
    # a sink given is a catch-all.
    sink_given: bool = False
    grace_period: float = option_field(
        10.0, "seconds the batches in flight get on SIGINT or SIGTERM", in_range(0, DAY)
    )
    webhook_secret: str | None = option_field(
        _SINK.secret, "HMAC-SHA256 secret for webhook signatures", repr=False, kind=str, secret=True
    )
    webhook_signature: str = option_field(
        _SINK.signature,
        "how the webhook signs with --webhook-secret: relay (Relay-Signature) or"
        " standard-webhooks (webhook-signature; the secret is whsec_<base64>)",
        choices=SCHEMES,
    )
    sink_format: str = option_field(
        _SINK.format,
        "how the webhook, NATS, AMQP and Redis sinks write events: relay (relay's own JSON),"
        " cloudevents (CloudEvents binary mode) or cloudevents-structured",
        choices=FORMATS,
    )
    cloudevents_source: str = option_field(
        _SINK.cloudevents_source,
        "the CloudEvents source attribute, a URI-reference",
        kind=check_source,
    )
    sink_timeout: float = option_field(
        _SINK.timeout, "seconds per request or publish to the sink", in_range(0, DAY, above=True)
    )
    sink_concurrency: int = option_field(
        _SINK.max_concurrency,
        "sink requests in flight across keys",
        in_range(1, 10_000, integer=True),
    )
    log_level: str = option_field("info", _one_of(LOG_LEVELS), choices=LOG_LEVELS)
    log_format: str = option_field("text", _one_of(LOG_FORMATS), choices=LOG_FORMATS)
    metrics_addr: tuple[str, int] | None = option_field(
        None, "HOST:PORT to serve /metrics, /healthz and /readyz", kind=_address
    )

    def __attrs_post_init__(self) -> None:
        check_routes(self.route, catch_all=self.sink if self.sink_given else None)


def _option(name: str, kind: Any, metadata: Mapping[str, Any], default: Any) -> Option:
    shown = f"{default:g}" if isinstance(default, float) else default
    return Option(
        name,
        metadata.get("kind", kind),
        metadata["help"] + ("" if default in (None, ()) else f" (default: {shown})"),
        metadata.get("choices"),
        metadata.get("secret", False),
        metadata.get("repeated", False),
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
        parser.add_argument(
            option.flag,
            dest=option.name,
            help=option.help,
            default=None,
            action="append" if option.repeated else "store",
        )


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not UTF-8 text, as TOML must be") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    # Every command reads the same file, so a key any command knows is known to all.
    known = [option.name for option in RUN_OPTIONS] + ["dsn"]
    for name in data:
        if name not in known:
            raise ConfigError(name, f"unknown option in {path}{_did_you_mean(name, known)}")
    if not isinstance(data.get("dsn", ""), str):
        raise ConfigError("dsn", f"must be a string (in {path})")
    return data


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


_EXPECTED: dict[Any, str] = {int: "an integer", float: "a number", str: "a string"}
_SHOWN = 40  # a longer bad value is cut in messages: one line, whatever was given


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
    if option.repeated:
        return _values(option, raw, source)
    try:
        value = _convert(option.kind, raw)
    except (ValueError, OverflowError) as exc:
        # A parser of relay's own says what is wrong; int's and float's words are Python's.
        own_words = str(exc) if option.kind not in (int, float) else ""
        reason = own_words or f"must be {_EXPECTED.get(option.kind, 'valid')}"
        shown = "***" if option.secret else repr(raw)
        shown = shown if len(shown) <= _SHOWN else f"{shown[: _SHOWN - 3]}..."
        raise ConfigError(option.name, f"{reason}, got {shown} (from {source})") from None
    if option.choices and value not in option.choices:
        raise ConfigError(option.name, f"must be one of {', '.join(option.choices)}, got {value!r}")
    return value


def _values(option: Option, raw: Any, source: str) -> tuple[Any, ...]:
    """A repeated option's values: a flag's list, a variable's words, a file's list of strings."""
    if isinstance(raw, str):
        items: list[Any] = raw.split() if source == option.env else [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        kind = type(raw).__name__
        raise ConfigError(option.name, f"must be a list of strings, got a {kind} (from {source})")
    values = []
    for item in items:
        if not isinstance(item, str):
            shown = repr(item)
            shown = shown if len(shown) <= _SHOWN else f"{shown[: _SHOWN - 3]}..."
            raise ConfigError(option.name, f"must be a string, got {shown} (from {source})")
        try:
            values.append(option.kind(item))
        except ConfigError as exc:
            raise ConfigError(exc.field, f"{exc.reason} (from {source})") from None
    return tuple(values)


def _config_path(args: argparse.Namespace, env: Mapping[str, str]) -> Path | None:
    path = getattr(args, "config", None)
    return path or (Path(env["RELAY_CONFIG"]) if env.get("RELAY_CONFIG") else None)


def _dsn(args: argparse.Namespace, env: Mapping[str, str], file: Mapping[str, Any]) -> str:
    """--dsn, RELAY_DSN, DATABASE_URL, the file's `dsn`, else "" (libpq's PG*)."""
    return resolve_dsn(getattr(args, "dsn", None), env) or str(file.get("dsn", ""))


def load_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `args` (parsed with `add_run_options`), the environment and the file."""
    env = os.environ if environ is None else environ
    config_path = _config_path(args, env)
    file = _read_file(config_path)
    values = _option_values(args, env, file, config_path, RUN_OPTIONS)
    return _settings(_dsn(args, env, file), values)


def _option_values(
    args: argparse.Namespace,
    env: Mapping[str, str],
    file: Mapping[str, Any],
    config_path: Path | None,
    options: Iterable[Option],
) -> dict[str, Any]:
    """Each of `options` given, checked: its flag, else its variable, else the file's key."""
    values: dict[str, Any] = {}
    for option in options:
        flag = getattr(args, option.name, None)
        if flag is not None:
            values[option.name] = _value(option, flag, option.flag)
        elif option.env in env:
            values[option.name] = _value(option, env[option.env], option.env)
        elif option.name in file:
            values[option.name] = _value(option, file[option.name], str(config_path))
    return values


def _settings(dsn: str, values: Mapping[str, Any]) -> Settings:
    backoffs: dict[str, Any] = {name: _backoff(name, values) for name in _BACKOFFS}
    config = Config(dsn=dsn, **backoffs, **_fields_of(Config, values))
    return Settings(config=config, sink_given="sink" in values, **_fields_of(Settings, values))


@attrs.frozen
class Database:
    """What an admin command (migrate, status, dead) needs: where, and whether the user said so."""

    config: Config
    dsn_given: bool  # False: no DSN source at all, libpq would choose the server on its own


def load_database(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Database:
    """The DSN and schema of an admin command: flags, then variables, then `--config`'s file."""
    env = os.environ if environ is None else environ
    config_path = _config_path(args, env)
    file = _read_file(config_path)
    # The file is `relay run`'s too: a bad value in it is an error here as well, not a surprise
    # when the relay starts.
    _settings(
        "",
        {o.name: _value(o, file[o.name], str(config_path)) for o in RUN_OPTIONS if o.name in file},
    )
    schema = next(o for o in RUN_OPTIONS if o.name == "schema")
    if getattr(args, "schema", None) is not None:
        values = {"schema": _value(schema, args.schema, schema.flag)}
    elif schema.env in env:
        values = {"schema": _value(schema, env[schema.env], schema.env)}
    elif "schema" in file:
        values = {"schema": _value(schema, file["schema"], str(config_path))}
    else:
        values = {}
    dsn = _dsn(args, env, file)
    return Database(Config(dsn=dsn, **values), dsn_given=bool(dsn) or dsn_given(None, env))


def load_routes(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The routes `relay run` would take, as (pattern, destination as `scheme://host[:port]`), the
    catch-all (`sink`, when given) last as `>`: from `--route` flags if any, else `RELAY_ROUTE`,
    else the `--config` file's `route`. None without routes. For `relay status`."""
    env = os.environ if environ is None else environ
    config_path = _config_path(args, env)
    routing = [option for option in RUN_OPTIONS if option.name in ("route", "sink")]
    values = _option_values(args, env, _read_file(config_path), config_path, routing)
    specs: tuple[RouteSpec, ...] = values.get("route", ())
    if not specs:
        return ()
    routes = tuple((spec.pattern.text, url_origin(spec.url)) for spec in specs)
    if "sink" in values:
        routes += ((CATCH_ALL, url_origin(values["sink"])),)
    return routes


# Variables of the project's own test suite, not options.
_NOT_OPTIONS = ("RELAY_TEST_",)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each `RELAY_*` variable that names no option, with the nearest one."""
    env = os.environ if environ is None else environ
    known = [option.env for option in RUN_OPTIONS] + ["RELAY_DSN", "RELAY_CONFIG"]
    # Compared without the prefix every name shares, which would make them all look alike.
    names = [name.removeprefix("RELAY_") for name in known]
    return [
        f"{name} is not a relay variable and is ignored"
        + _did_you_mean(name.removeprefix("RELAY_"), names).replace("mean ", "mean RELAY_")
        for name in sorted(env)
        if name.startswith("RELAY_") and name not in known and not name.startswith(_NOT_OPTIONS)
    ]


def environment_help() -> str:
    """The variables `relay run` reads, for its --help."""
    names = ", ".join(option.env for option in RUN_OPTIONS)
    return (
        "environment: RELAY_DSN, DATABASE_URL, libpq's PG* (the DSN, in that order);"
        f" RELAY_CONFIG (the file); {names}. Flags win over variables, variables over the file."
    )


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
