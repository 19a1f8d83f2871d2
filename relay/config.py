"""The relay's configuration: one frozen value, validated once, passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .backoff import Backoff
from .errors import ConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _check(predicate: Callable[[Any], bool], reason: str) -> Callable[[Any, Any, Any], None]:
    def validate(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not predicate(value):
            raise ConfigError(attribute.name, f"{reason}, got {value!r}")

    return validate


_positive = _check(
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
    "must be a number > 0",
)
_positive_int = _check(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "must be an integer > 0"
)


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
        pool_size: connections the drainer's pool keeps; with two or more, the drainer keeps one
            between claims.

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
    batch_size: int = option_field(500, "events claimed per transaction", _positive_int)
    batch_bytes: int = option_field(
        16 * 1024 * 1024,
        "payload and headers bytes claimed per transaction (one larger event goes alone)",
        _positive_int,
    )
    poll_interval: float = option_field(5.0, "seconds between fallback polls", _positive)
    max_attempts: int = option_field(10, "deliveries before an event is dead", _positive_int)
    retry_backoff: Backoff = attrs.field(
        factory=Backoff,
        metadata={"parts": {"base": "first retry delay in seconds", "cap": "longest retry delay"}},
    )
    delivery_timeout: float = option_field(30.0, "seconds a batch may spend in the sink", _positive)
    restart_intensity: int = option_field(
        10,
        "restarts allowed per period before giving up",
        _check(lambda v: isinstance(v, int) and v >= 0, "must be >= 0"),
    )
    restart_period: float = option_field(60.0, "seconds over which restarts are counted", _positive)
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
    idle_in_transaction_timeout: float = attrs.field(default=60.0, validator=_positive)
    statement_timeout: float = attrs.field(default=30.0, validator=_positive)
    pool_size: int = attrs.field(default=2, validator=_positive_int)

    @property
    def channel(self) -> str:
        """The NOTIFY channel the outbox trigger signals on."""
        return notify_channel(self.schema)
