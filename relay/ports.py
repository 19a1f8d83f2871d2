"""The narrow interfaces the actors see: the outbox, the sink, and the event between them.

`postgres.py` and `relay.testing.MemoryOutbox` implement `Outbox`; `relay.sinks` and any plain async
callable implement `Sink`. The actors import nothing else.
"""

from __future__ import annotations

import datetime
import inspect
import json
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

import attrs


class JsonObject(Mapping[str, Any]):
    """A read-only mapping over the text of a JSON object, decoded on first read.

    The PostgreSQL outbox hands each event's headers over as one: a byte-level sink copies `json`
    as it is, and only code that reads a header pays for decoding.
    """

    __slots__ = ("_decoded", "json")

    def __init__(self, json: bytes) -> None:
        self.json = json
        self._decoded: dict[str, Any] | None = None

    def _mapping(self) -> dict[str, Any]:
        if self._decoded is None:
            decoded = json.loads(self.json)
            if not isinstance(decoded, dict):
                raise TypeError(f"not a JSON object: {self.json[:40]!r}")
            self._decoded = decoded
        return self._decoded

    def __getitem__(self, name: str) -> Any:
        return self._mapping()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return repr(self._mapping())


@attrs.frozen
class OutboxEvent:
    """One committed outbox row, as handed to a sink.

    The payload travels as the JSON bytes PostgreSQL sent; `payload` decodes them when read, so
    byte-level sinks (stdout, webhook, brokers) never pay for decoding.

    Attributes:
        id: the row's id; unique, increasing in commit-independent insert order. Deduplicate on it.
        topic: the routing name (subject, stream, path).
        key: the ordering key, or None for unordered events.
        payload_json: the payload as JSON text, in bytes.
        headers: metadata the writer attached, a JSON object (from PostgreSQL a `JsonObject`,
            decoded on first read).
        created_at: when the writer inserted the row.
        attempts: deliveries tried before this one.
    """

    id: int
    topic: str
    key: str | None
    payload_json: bytes = attrs.field(repr=False)
    headers: Mapping[str, Any] = attrs.field(factory=dict)
    created_at: datetime.datetime = attrs.field(factory=lambda: datetime.datetime.now(datetime.UTC))
    attempts: int = 0

    @property
    def payload(self) -> Any:
        """The payload, decoded from JSON: a new object at every access, so read it once.

        Not kept on the event: a batch of events each holding its decoded payload until the
        batch settles drained a fifth slower than decoding each one and letting it go (side by
        side, 200,000 events, batch 500).
        """
        # str input spares json.loads its guess at the bytes' encoding.
        return json.loads(self.payload_json.decode())

    @classmethod
    def create(
        cls,
        id: int,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        attempts: int = 0,
        created_at: datetime.datetime | None = None,
    ) -> OutboxEvent:
        """An event from a Python payload (encoded to JSON here), mostly for tests."""
        return cls(
            id=id,
            topic=topic,
            key=key,
            payload_json=json.dumps(payload).encode(),
            headers=dict(headers or {}),
            attempts=attempts,
            created_at=created_at or datetime.datetime.now(datetime.UTC),
        )


@attrs.frozen
class Retry:
    """A failed event to try again after `delay` seconds, recording `reason`."""

    delay: float
    reason: str


class ClaimedBatch(Protocol):
    """Events claimed inside an open transaction.

    Leaving the `claim()` block without `settle()` puts every event back untouched.
    """

    @property
    def events(self) -> Sequence[OutboxEvent]: ...

    @property
    def contended(self) -> bool:
        """True when the claim left available events at the head of the queue (partitions of the
        key space another relay held, beyond its share, or past the byte limit): a short batch
        then does not mean the outbox is drained."""
        ...

    @property
    def next_due(self) -> float | None:
        """Seconds from the claim until the earliest retry it saw scheduled for later, or None."""
        ...

    async def settle(
        self,
        *,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int] = (),
        defer: Mapping[int, Retry] | None = None,
    ) -> None:
        """Commit the outcome: every claimed event not named here was delivered and goes away.

        Args:
            retry: events that failed and are rescheduled, `attempts + 1`.
            bury: events that failed for the last time and move to the dead table, with a reason.
            hold: events not delivered because an earlier event of their key failed: put back as
                they were, still behind that event.
            defer: events whose destination was unavailable: put back with their `attempts`
                unchanged, not available before the delay, recording the reason; like a retry,
                each holds back the later events of its key until then.
        """
        ...


class Outbox(Protocol):
    """Where events wait: claim them, settle them, listen."""

    def claim(
        self, limit: int, max_bytes: int | None = None, share_with: int = 0
    ) -> AbstractAsyncContextManager[ClaimedBatch]:
        """Claim up to `limit` available events, oldest first, holding them in a transaction.

        With `max_bytes`, only as many of the oldest as fit in it by the size of their payload and
        headers, and always at least one (a larger event goes alone). An event whose key has an
        earlier event still waiting for a retry is not handed out. With `share_with`, the claim
        leaves room at the head of the queue for that many more claims of the caller's own, as
        it does for other relays. A claim never takes an event of a key another open claim holds.
        """
        ...

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[None]]:
        """Listen for new-event notifications; entering returns once listening has begun.

        The iterator yields once per notification and ends (or raises `ListenerLost`) when the
        connection is lost.
        """
        ...


@attrs.frozen
class Backlog:
    """How much waits in the outbox, for the metrics.

    Attributes:
        pending: events in the outbox, retrying and claimed ones included.
        oldest_age: seconds since the oldest pending event was written; None when none is
            pending (or its age is unknown).
        notification_queue_usage: the fraction (0 to 1) of the server's NOTIFY queue in use,
            or None where there is no such queue.
    """

    pending: int
    oldest_age: float | None
    notification_queue_usage: float | None = None


@runtime_checkable
class Located(Protocol):
    """An `Outbox` may also say where it is, for the logs (PostgreSQL: `host:port/dbname` as
    the server was reached, not as the DSN was written)."""

    where: str


@runtime_checkable
class ReportsBacklog(Protocol):
    """An `Outbox` may also tell its backlog; the actors never ask, the metrics do."""

    async def backlog(self) -> Backlog:
        """The outbox's backlog now. Callable from any task, not only the relay's own."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Delivers batches of events somewhere.

    `deliver` returns when every event is delivered; raises `PartialDelivery({id: reason})` when
    some failed (the others count as delivered); raises anything else when the whole batch failed.
    Events of one key must be delivered in the order given, and a sink must not deliver an event
    after an earlier event of the same key failed in the same batch.
    A sink may also be an async context manager: the drainer enters it before its first batch and
    leaves it when it stops, so a restarted drainer reconnects.
    """

    async def deliver(self, events: Sequence[OutboxEvent]) -> None: ...


Handler = Callable[[Sequence[OutboxEvent]], Awaitable[None]]


@attrs.define(eq=False)
class CallableSink:
    """A plain async callable `handler(events)` seen as a `Sink`."""

    handler: Handler

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        await self.handler(events)


def as_sink(sink: Sink | Handler) -> Sink:
    """`sink` itself when it has `deliver`, else the async callable wrapped in a `CallableSink`."""
    if isinstance(sink, Sink):
        return sink
    if callable(sink) and (
        inspect.iscoroutinefunction(sink) or inspect.iscoroutinefunction(type(sink).__call__)
    ):
        return CallableSink(sink)
    raise TypeError(
        f"a sink must have an async deliver(events) or be an async callable, got {sink!r}"
    )
