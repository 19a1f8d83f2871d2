"""`MemoryOutbox`: the PostgreSQL outbox's semantics in memory, with fault injection."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from ..errors import OutboxUnreachable
from ..ports import Backlog, JsonObject, OutboxEvent, Retry

# Private: the public fault-injection API is one typed method per operation.
_Operation = Literal["claim", "settle", "listen"]
_HANG: Literal["hang"] = "hang"


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio.run: a row enqueued before the run is available at once
        return -math.inf


def event_size(event: OutboxEvent) -> int:
    """The bytes of an event's payload and headers as JSON: what a claim's byte limit counts."""
    headers = event.headers
    encoded = (
        headers.json if isinstance(headers, JsonObject) else json.dumps(dict(headers)).encode()
    )
    return len(event.payload_json) + len(encoded)


def _fitting(rows: list[_Row], max_bytes: int | None) -> list[_Row]:
    """The longest prefix of `rows` within `max_bytes`, and never less than the first row."""
    if max_bytes is None:
        return rows
    total = 0
    for taken, row in enumerate(rows):
        total += event_size(row.event)
        if total > max_bytes and taken > 0:
            return rows[:taken]
    return rows


@attrs.frozen
class PendingRow:
    """An outbox row as the table holds it: the event, when it is next available, its last error."""

    event: OutboxEvent
    available_at: float
    last_error: str | None


@attrs.frozen
class DeadEvent:
    """A row of the dead table: the event (its final `attempts`), why it died, and when."""

    event: OutboxEvent
    reason: str
    failed_at: float


@attrs.frozen
class MemoryOutboxStatistics:
    """What a `MemoryOutbox` has been asked.

    Attributes:
        claims: `claim()` calls, including failed ones.
        open_claims: claims whose transaction is open right now.
        listening: listen connections open right now.
        listen_attempts: the trio time of every `listen()` call, in order.
    """

    claims: int
    open_claims: int
    listening: int
    listen_attempts: tuple[float, ...]


@attrs.define(eq=False)
class _Row:
    event: OutboxEvent
    available_at: float
    last_error: str | None = None
    enqueued_at: float = -math.inf  # trio time; -inf: enqueued before `trio.run`, age unknown


def _waiting(row: _Row, now: float) -> bool:
    """Whether `row` waits for a retry or a deferral (retried rows and rows with a
    `last_error`, as the PostgreSQL outbox's partial indexes hold them) that has not come yet."""
    return (row.event.attempts > 0 or row.last_error is not None) and row.available_at > now


@attrs.define(eq=False)
class MemoryBatch:
    """A claim on a `MemoryOutbox`: `events`, held until the claim block ends."""

    _outbox: MemoryOutbox
    events: tuple[OutboxEvent, ...]
    settled: bool = False
    contended: bool = False  # one process owns a MemoryOutbox: no other relay holds partitions
    next_due: float | None = None

    async def settle(
        self,
        *,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int] = (),
        defer: Mapping[int, Retry] | None = None,
    ) -> None:
        """Commit the outcome; see `relay.ports.ClaimedBatch.settle`."""
        await self._outbox._operation("settle")
        self._outbox._settle(self, retry, bury, hold, defer or {})


@attrs.define(eq=False)
class _Connection:
    """One listen connection: yields once per notification, ends when dropped."""

    _send: trio.MemorySendChannel[None]
    _receive: trio.MemoryReceiveChannel[None]
    silenced: bool = False
    dropped: bool = False

    def notify(self) -> None:
        if not (self.silenced or self.dropped):
            self._send.send_nowait(None)

    def drop(self) -> None:
        self.dropped = True
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def __aiter__(self) -> _Connection:
        return self

    async def __anext__(self) -> None:
        try:
            await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if self.dropped:  # what was buffered on a lost connection is lost with it
            raise StopAsyncIteration


@attrs.define(eq=False)
class MemoryOutbox:
    """An in-memory `relay.ports.Outbox` with the PostgreSQL outbox's semantics.

    - `claim()` hands out the oldest rows whose `available_at` has come, skipping rows another
      open claim holds and rows whose key has an earlier row waiting for a retry.
    - Leaving the claim block without `settle()` puts every row back untouched (a rollback).
    - `settle(retry=...)` sets `attempts + 1`, `available_at = now + delay` (now: when `settle`
      is called, so a retry after a delivery timeout still waits its delay) and `last_error`;
      `bury` moves rows to the dead table with `attempts + 1`; `hold` leaves rows untouched;
      `defer` sets `available_at = now + delay` and `last_error`, `attempts` unchanged;
      every other claimed row is deleted (delivered).
    - `enqueue()` notifies every open listen connection, like the outbox's NOTIFY trigger.

    Times are trio times. Fault injection, each fault used by one call: `fail_next_claim()`,
    `hang_next_claim()`, `fail_next_settle()`, `hang_next_settle()`, `fail_next_listen()`,
    `hang_next_listen()`; and for open listen connections `drop_listeners()` and
    `silence_listeners()`.
    """

    _rows: dict[int, _Row] = attrs.field(factory=dict)  # in id order: ids only grow
    _dead: list[DeadEvent] = attrs.field(factory=list)
    _locked: set[int] = attrs.field(factory=set)
    _next_id: int = 1
    _faults: dict[_Operation, deque[Exception | Literal["hang"]]] = attrs.field(factory=dict)
    _connections: list[_Connection] = attrs.field(factory=list)
    _claims: int = 0
    _open_claims: int = 0
    _listen_attempts: list[float] = attrs.field(factory=list)
    _settled: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)

    # -- the writer's side and inspection ---------------------------------------------------------

    def enqueue(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert one event, available now, and notify the listeners. Returns its id."""
        id = self._next_id
        self._next_id += 1
        event = OutboxEvent.create(id, topic, payload, key=key, headers=headers)
        now = _now()
        self._rows[id] = _Row(event, available_at=now, enqueued_at=now)
        for connection in self._connections:
            connection.notify()
        return id

    def pending(self) -> list[OutboxEvent]:
        """Every event still in the outbox, claimed or not, oldest first."""
        return [row.event for row in self._rows.values()]

    def pending_rows(self) -> list[PendingRow]:
        """Every row still in the outbox with its schedule, oldest first."""
        return [
            PendingRow(row.event, row.available_at, row.last_error) for row in self._rows.values()
        ]

    def dead(self) -> list[DeadEvent]:
        """The dead table, in the order events died."""
        return list(self._dead)

    async def wait_drained(self) -> None:
        """Return once the outbox is empty: every event delivered or moved to the dead table.

        Retries are waited out too, which takes no real time on `MockClock` with autojump.
        """
        await trio.lowlevel.checkpoint()
        while self._rows:
            await self._settled.park()

    def statistics(self) -> MemoryOutboxStatistics:
        """Counts useful to tests."""
        return MemoryOutboxStatistics(
            claims=self._claims,
            open_claims=self._open_claims,
            listening=sum(1 for c in self._connections if not c.dropped),
            listen_attempts=tuple(self._listen_attempts),
        )

    # -- fault injection ---------------------------------------------------------------------------
    # Faults queue up per operation and are used one per call, in order: `fail_next_claim(2)` then
    # `hang_next_claim()` fails two claims and hangs the third. A fault is spent even when the call
    # it hit is cancelled.

    def fail_next_claim(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `claim()` calls raise `error` before claiming anything.

        The default error, `relay.OutboxUnreachable`, is what the PostgreSQL outbox raises when the
        database cannot be reached; the relay's supervisor restarts the drainer.
        """
        self._add_failures("claim", n, error)

    def hang_next_claim(self) -> None:
        """Make the next `claim()` wait until it is cancelled, like a claim on a stalled server."""
        self._faults.setdefault("claim", deque()).append(_HANG)

    def fail_next_settle(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `settle()` calls raise `error` (default `relay.OutboxUnreachable`).

        The claim is then left unsettled, so its rows go back untouched: a commit that never came.
        """
        self._add_failures("settle", n, error)

    def hang_next_settle(self) -> None:
        """Make the next `settle()` wait until it is cancelled; its rows go back untouched."""
        self._faults.setdefault("settle", deque()).append(_HANG)

    def fail_next_listen(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `listen()` calls fail to connect with `error`.

        The default error is `relay.OutboxUnreachable`; every attempt, failed or not, is recorded
        in `statistics().listen_attempts`.
        """
        self._add_failures("listen", n, error)

    def hang_next_listen(self) -> None:
        """Make the next `listen()` connect attempt wait until it is cancelled."""
        self._faults.setdefault("listen", deque()).append(_HANG)

    def drop_listeners(self) -> None:
        """Lose every open listen connection: their notification iterators end."""
        for connection in self._connections:
            connection.drop()

    def silence_listeners(self) -> None:
        """Keep the open listen connections open but deliver them nothing more.

        A new connection (after a reconnect) hears notifications again.
        """
        for connection in self._connections:
            connection.silenced = True

    def _add_failures(self, operation: _Operation, n: int, error: Exception | None) -> None:
        # Checked here, at the call, so a mistake fails the test's own line rather than the relay.
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if error is not None and not isinstance(error, Exception):
            raise TypeError(f"error must be an exception instance, got {error!r}")
        faults = self._faults.setdefault(operation, deque())
        for _ in range(n):
            faults.append(
                error if error is not None else OutboxUnreachable(f"{operation}: injected failure")
            )

    async def _operation(self, operation: _Operation) -> None:
        await trio.lowlevel.checkpoint()
        faults = self._faults.get(operation)
        if faults:
            fault = faults.popleft()
            if fault == _HANG:
                await trio.sleep_forever()
            assert isinstance(fault, Exception)
            raise fault

    # -- the Outbox protocol ----------------------------------------------------------------------

    @asynccontextmanager
    async def claim(self, limit: int, max_bytes: int | None = None) -> AsyncIterator[MemoryBatch]:
        """Claim up to `limit` available events, oldest first, until the block ends; with
        `max_bytes`, only the oldest whose payload and headers (`event_size`) fit, at least one."""
        self._claims += 1
        await self._operation("claim")
        rows, passed_over = self._claimable(limit)
        fitting = _fitting(rows, max_bytes)
        batch = MemoryBatch(
            self,
            tuple(row.event for row in fitting),
            # cut by the byte limit, or rows left to other claims: not drained
            contended=passed_over or len(fitting) < len(rows),
            next_due=self._next_due(),
        )
        claimed = {event.id for event in batch.events}
        self._locked |= claimed
        self._open_claims += 1
        try:
            yield batch
        finally:
            self._open_claims -= 1
            self._locked -= claimed

    def _claimable(self, limit: int) -> tuple[list[_Row], bool]:
        """The rows a claim takes, and whether it passed over rows that open claims hold.

        As PostgreSQL's partition locks do, an open claim holds its events' keys: no other claim
        takes an event of those keys until it closes.
        """
        now = trio.current_time()
        held_keys = {self._rows[id].event.key for id in self._locked if id in self._rows}
        passed_over = False
        # A locked row still counts here: PostgreSQL's check sees rows that others hold.
        waiting: dict[str, int] = {}
        for row in self._rows.values():
            key = row.event.key
            if key is not None and _waiting(row, now):
                waiting.setdefault(key, row.event.id)
        chosen: list[_Row] = []
        for id, row in self._rows.items():
            if len(chosen) >= limit:
                break
            key = row.event.key
            if id in self._locked or (key is not None and key in held_keys):
                passed_over = True
                continue
            if row.available_at > now:
                continue
            if key is not None and waiting.get(key, id) < id:
                continue
            chosen.append(row)
        return chosen, passed_over

    def _settle(
        self,
        batch: MemoryBatch,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int],
        defer: Mapping[int, Retry],
    ) -> None:
        if batch.settled:
            raise RuntimeError("this batch is already settled")
        claimed = {event.id for event in batch.events}
        named = [*retry, *bury, *hold, *defer]
        if not set(named) <= claimed or len(set(named)) != len(named):
            raise ValueError("retry, bury, hold and defer must name distinct events of the batch")
        now = trio.current_time()
        for event in batch.events:
            row = self._rows[event.id]
            if event.id in retry:
                row.event = attrs.evolve(event, attempts=event.attempts + 1)
                row.available_at = now + retry[event.id].delay
                row.last_error = retry[event.id].reason
            elif event.id in defer:
                row.event = event  # as claimed: no attempt counted
                row.available_at = now + defer[event.id].delay
                row.last_error = defer[event.id].reason
            elif event.id in bury:
                del self._rows[event.id]
                self._dead.append(
                    DeadEvent(attrs.evolve(event, attempts=event.attempts + 1), bury[event.id], now)
                )
            elif event.id not in hold:
                del self._rows[event.id]
        batch.settled = True
        self._settled.unpark_all()

    def _next_due(self) -> float | None:
        """Seconds until the earliest scheduled retry, or None if none is scheduled."""
        now = trio.current_time()
        due = [row.available_at for row in self._rows.values() if _waiting(row, now)]
        return min(due) - now if due else None

    async def backlog(self) -> Backlog:
        """Rows in the outbox (claimed ones too) and the trio time since the oldest was enqueued.

        A row enqueued before `trio.run` has no known age: it counts, but has no `oldest_age`.
        """
        await trio.lowlevel.checkpoint()
        oldest = min((row.enqueued_at for row in self._rows.values()), default=None)
        age = None if oldest is None or oldest == -math.inf else trio.current_time() - oldest
        return Backlog(pending=len(self._rows), oldest_age=age)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[None]]:
        """A listen connection: yields once per `enqueue()` until dropped."""
        self._listen_attempts.append(trio.current_time())
        await self._operation("listen")
        send, receive = trio.open_memory_channel[None](math.inf)
        connection = _Connection(send, receive)
        self._connections.append(connection)
        try:
            yield connection
        finally:
            self._connections.remove(connection)
            connection.close()
