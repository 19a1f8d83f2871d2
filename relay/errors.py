"""The error tree: one root, leaves that carry their context."""

from __future__ import annotations

from collections.abc import Collection, Mapping


class RelayError(Exception):
    """The root of every error relay raises on purpose."""


class ConfigError(RelayError):
    """A configuration value is missing or invalid."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OutboxUnavailable(RelayError):
    """The outbox's database cannot be reached or refused the operation."""


class OutboxUnreachable(OutboxUnavailable):
    """The database cannot be reached now: connection refused or lost, a timeout, a server
    starting up or shutting down, out of connections or file descriptors. An outage: relay waits
    for it (see `relay.outages`)."""


class DsnRejected(ConfigError, OutboxUnavailable):
    """The server answered and refused the DSN for good (authentication failed, no such
    database), or the DSN cannot be parsed: a configuration error, never waited for."""


class Unreachable(RelayError):
    """A database or broker could not be reached within the time allowed (`--wait`)."""


class SchemaMissing(OutboxUnavailable):
    """The outbox schema is not there or not up to date: run `relay migrate`."""


class MigrationRefused(OutboxUnavailable):
    """A migration cannot run now (relays it would break are connected): nothing was changed."""


class ListenerLost(OutboxUnreachable):
    """The listener's connection ended; the listener waits with backoff and reconnects."""


class SinkFailed(RelayError):
    """A sink could not deliver one event."""

    def __init__(self, event_id: int, reason: str) -> None:
        super().__init__(f"event {event_id}: {reason}")
        self.event_id = event_id
        self.reason = reason


class SinkUnavailable(RelayError):
    """Raised by a sink whose connection to its destination is lost (say, a broker went away).

    Raised from entering the sink or from `deliver`: the drainer rolls the batch back (every event
    stays pending as it was, no attempt counted), leaves the sink, waits with `outage_backoff` and
    enters it again, which reconnects. An outage, not a crash: it never counts towards the restart
    intensity. Raise it from `deliver` itself, not wrapped in an exception group.
    """


class NotRestartable(RelayError):
    """An actor's error that no restart can mend: the supervisor stops every actor and raises it
    (bare, not in a group), and the relay stops."""


class OutputClosed(SinkUnavailable, NotRestartable):
    """The sink's output is closed for good (say, the reader of `relay run | head` went away).

    Like any `SinkUnavailable`, the batch is rolled back untouched and counts no attempt; unlike
    a broker that may come back, a closed output cannot reopen, so the relay stops.
    """


class PartialDelivery(RelayError):
    """Raised by a sink when some events of a batch failed and the rest were delivered.

    Args:
        failures: the id of each failed event and why it failed.
        permanent: the ids among `failures` that must not be retried (e.g. a webhook answered
            400): the drainer buries them at once. The other failures are retried.
        unavailable: the ids among `failures` whose destination was unavailable (not their own
            fault), each with the seconds to wait before trying it again: the drainer puts them
            back untouched, no attempt counted, not available before that delay; until then they
            hold back the later events of their key. A routing sink says so for one route down.
        held: ids not among `failures` that the sink did not try, through no fault of theirs or
            of their destination (a routing sink holds an event whose key's earlier event went to
            another route): put back untouched, no attempt counted, claimed again at once; like a
            failure, each holds back the later events of its key.
    """

    def __init__(
        self,
        failures: Mapping[int, str],
        *,
        permanent: Collection[int] = (),
        unavailable: Mapping[int, float] | None = None,
        held: Collection[int] = (),
    ) -> None:
        failures = dict(failures)
        held = frozenset(held)
        permanent = frozenset(permanent)
        unavailable = dict(unavailable or {})
        for name, ids in (("permanent", permanent), ("unavailable", unavailable.keys())):
            if not ids <= failures.keys():
                missing = sorted(ids - failures.keys())
                raise ValueError(f"{name} ids not among the failures: {missing}")
        if both := permanent & unavailable.keys():
            raise ValueError(f"ids both permanent and unavailable: {sorted(both)}")
        if both := held & failures.keys():
            raise ValueError(f"ids both held and failed: {sorted(both)}")
        super().__init__(
            f"{len(failures)} event(s) failed"
            + (f", {len(permanent)} permanently" if permanent else "")
            + (f", {len(unavailable)} for an unavailable destination" if unavailable else "")
            + (f", {len(held)} held, not tried" if held else "")
        )
        self.failures: Mapping[int, str] = failures
        self.permanent: frozenset[int] = permanent
        self.unavailable: Mapping[int, float] = unavailable
        self.held: frozenset[int] = held


class RestartIntensityExceeded(RelayError):
    """More restarts than the policy allows within its period: the relay gives up."""


class NotFound(RelayError):
    """Something asked for by name or id is not there (say, `relay dead retry --id 9999`); what
    was there was still done."""


class TransactionRequired(RelayError):
    """`relay.enqueue` was handed a connection it cannot write through in a transaction of the
    caller's: closed, in autocommit mode outside a transaction (each statement would commit by
    itself), or in a transaction that already failed. Nothing was written."""
