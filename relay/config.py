"""The relay's configuration: one frozen value, validated once, passed down."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .backoff import Backoff
from .errors import ConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TRACING_MODES = ("auto", "off")


def _check(predicate: Callable[[Any], bool], reason: str) -> Callable[[Any, Any, Any], None]:
    def validate(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not predicate(value):
            shown = repr(value)  # cut: a 4,000-digit number is still one line
            shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
            raise ConfigError(attribute.name, f"{reason}, got {shown}")

    return validate


DAY = 86400.0
# libpq's variables that choose a server, a database or a role: any one of them is a DSN source.
LIBPQ_TARGET_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def in_range(
    low: float, high: float, *, integer: bool = False, above: bool = False
) -> Callable[[Any, Any, Any], None]:
    """A validator for a finite number from `low` (or just `above` it) to `high`: every numeric
    option is bounded, so that no flag, variable or file can hand the relay inf, nan or a
    number PostgreSQL or trio cannot take (a batch of 10**20 crash-loops)."""
    if integer:
        reason = f"must be an integer from {low:g} to {high:g}"
    else:
        reason = f"must be a finite number {'>' if above else '>='} {low:g} and <= {high:g}"

    def ok(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if integer and not isinstance(value, int):
            return False
        if not math.isfinite(value) or value > high:
            return False
        return value > low if above else value >= low

    return _check(ok, reason)


_seconds = in_range(0, DAY, above=True)
MAX_CLAIMS_IN_FLIGHT = 16
_positive_int = in_range(1, 1000, integer=True)


def option_field(default: Any, help: str, check: Any = None, repr: bool = True, **more: Any) -> Any:
    """A field that is also a `relay run` option; `more` may give the flag's `kind` (its parser,
    when the annotation is none), `choices`, or say it is `secret`."""
    return attrs.field(default=default, validator=check, repr=repr, metadata={"help": help, **more})


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of the outbox in `schema` (the migration's trigger signals on it)."""
    return f"{schema}_outbox"


def resolve_dsn(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The DSN to use: `explicit`, else `RELAY_DSN`, else `DATABASE_URL`, else "" (libpq's PG*)."""
    env = os.environ if environ is None else environ
    return explicit or env.get("RELAY_DSN") or env.get("DATABASE_URL") or ""


def dsn_given(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether any DSN source was given: a DSN, `RELAY_DSN`, `DATABASE_URL` or one of libpq's
    `LIBPQ_TARGET_VARIABLES`. Without one, libpq would pick a server and database on its own."""
    env = os.environ if environ is None else environ
    return bool(resolve_dsn(explicit, env)) or any(env.get(name) for name in LIBPQ_TARGET_VARIABLES)


@attrs.frozen(kw_only=True)
class Config:
    """Everything the relay needs to know, with a sensible default for all but the DSN.

    Attributes:
        dsn: libpq connection string or URL; "" means libpq's own `PG*` variables.
        schema: the schema holding `outbox`, `outbox_dead` and `schema_version`.
        poll_interval: seconds between fallback polls when no notification arrives.
        retry_backoff: delay before a failed event is tried again.
        delivery_timeout: seconds one batch may spend in the sink before it counts as failed.
        restart_intensity: restarts allowed within `restart_period` before the relay gives up.
        restart_backoff: delay before a crashed actor is restarted.
        outage_backoff: delay between tries to reach an unreachable database or broker; an outage
            is waited for as long as it lasts and never counts as a restart.
        batch_bytes: payload and headers bytes claimed per transaction, at most; one event larger
            than that is still claimed, alone.
        silent_listener_threshold: polls in a row that find unannounced work while the listener
            says it is connected, after which the listener is recycled.
        application_name: shown in `pg_stat_activity` for every relay connection.
        idle_in_transaction_timeout: seconds PostgreSQL lets a relay transaction sit idle.
        statement_timeout: seconds any one relay statement may run.
        claims_in_flight: batches the drainer claims and delivers at once. With two or more, the
            next claim overlaps the delivery of the current batch, on a backlog only (once a drain
            has claimed a full batch): below that, one claim takes the whole head of the queue, as
            fast as one batch at a time. Claims in flight never share a key.
        pool_size: connections the drainer's pool keeps; raised to `claims_in_flight` + 1 when
            lower (see `connections`). With two or more, the drainer keeps one between claims.
        tracing: `auto` records an OpenTelemetry span per settled batch when `opentelemetry-api`
            is installed (see `relay.tracing`); `off` never imports it.

    Fields made with `option_field`, and `retry_backoff`'s parts, are also options of `relay run`
    (`--batch-size`, `RELAY_BATCH_SIZE`): their help says what the others are.
    """

    dsn: str = attrs.field(default="", repr=False)  # may hold a password: never in a repr
    schema: str = option_field(
        "relay",
        "the outbox schema",
        _check(
            lambda v: isinstance(v, str) and _IDENTIFIER.fullmatch(v) is not None,
            "must be a plain identifier (letters, digits, _; at most 63)",
        ),
    )
    batch_size: int = option_field(
        500, "events claimed per transaction", in_range(1, 100_000, integer=True)
    )
    batch_bytes: int = option_field(
        16 * 1024 * 1024,
        "payload and headers bytes claimed per transaction (one larger event goes alone)",
        in_range(1, 1 << 30, integer=True),
    )
    claims_in_flight: int = option_field(
        3,
        "batches claimed and delivered at once; 2 or more overlaps claiming with delivering",
        in_range(1, MAX_CLAIMS_IN_FLIGHT, integer=True),
    )
    poll_interval: float = option_field(5.0, "seconds between fallback polls", _seconds)
    max_attempts: int = option_field(
        10, "deliveries before an event is dead", in_range(1, 1_000_000, integer=True)
    )
    retry_backoff: Backoff = attrs.field(
        factory=Backoff,
        metadata={"parts": {"base": "first retry delay in seconds", "cap": "longest retry delay"}},
    )
    delivery_timeout: float = option_field(30.0, "seconds a batch may spend in the sink", _seconds)
    restart_intensity: int = option_field(
        10,
        "restarts allowed per period before giving up",
        in_range(0, 1_000_000, integer=True),
    )
    restart_period: float = option_field(
        60.0, "seconds over which restarts are counted", in_range(0, 7 * DAY, above=True)
    )
    restart_backoff: Backoff = attrs.field(factory=lambda: Backoff(base=0.1, cap=5.0))
    outage_backoff: Backoff = attrs.field(
        factory=lambda: Backoff(base=0.5, cap=30.0),
        metadata={
            "parts": {
                "base": "first wait for an unreachable database or broker, in seconds",
                "cap": "longest wait between tries to reach it",
            }
        },
    )
    silent_listener_threshold: int = attrs.field(default=3, validator=_positive_int)
    application_name: str = "relay"
    idle_in_transaction_timeout: float = attrs.field(default=60.0, validator=_seconds)
    statement_timeout: float = attrs.field(default=30.0, validator=_seconds)
    pool_size: int = attrs.field(default=2, validator=_positive_int)
    tracing: str = option_field(
        "auto",
        "a span per delivered batch: auto (when opentelemetry-api is installed) or off",
        _check(lambda v: v in TRACING_MODES, "must be auto or off"),
        choices=TRACING_MODES,
    )

    @property
    def connections(self) -> int:
        """Connections the drainer's pool holds: `pool_size`, and never fewer than one per claim
        in flight and one more."""
        return max(self.pool_size, self.claims_in_flight + 1)

    @property
    def channel(self) -> str:
        """The NOTIFY channel the outbox trigger signals on."""
        return notify_channel(self.schema)
