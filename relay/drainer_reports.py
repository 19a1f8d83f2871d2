"""What the drainer reports to the outside: its counters, and each batch it settled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .ports import OutboxEvent


def _counter(what: str) -> Any:
    """A field of `DrainerStatistics` that counts `what`, from 0."""
    return attrs.field(default=0, metadata={"counter": what})


@attrs.frozen
class DrainerStatistics:
    """What the drainer has done. Each counter's metadata says what it counts, which is also the
    help of the metric that exports it (`relay_<name>_total`)."""

    delivered: int = _counter("Events the sink took.")
    retried: int = _counter("Failed events rescheduled for a retry.")
    dead: int = _counter("Failed events moved to the dead table.")
    held: int = _counter("Events put back untouched behind a failed event of their key.")
    deferred: int = _counter(
        "Events put back for an unavailable destination, no attempt counted (a route down)."
    )
    batches: int = _counter("Claims that returned events.")
    claims: int = _counter("Claims made, empty ones included.")
    empty_claims: int = _counter("Claims that returned nothing.")
    last_drain_at: float | None = None  # trio time the last drain finished, or None


@attrs.frozen
class BatchReport:
    """One settled batch, as the drainer's observers (the metrics) see it.

    Attributes:
        duration: seconds from the start of the claim until the outcome was committed.
        claimed: events in the batch.
        delivered: the events the sink took, now gone from the outbox.
        events: every event claimed, delivered or not, in claim order (the tracing links them
            all to their producers).
        put_back: events put back with no attempt counted: deferred while their destination is
            down, or held behind an earlier event of their key. Not the events' failure.
    """

    duration: float
    claimed: int
    delivered: tuple[OutboxEvent, ...]
    events: tuple[OutboxEvent, ...] = ()
    put_back: int = 0


BatchObserver = Callable[[BatchReport], None]
