"""`MemoryOutbox`: the PostgreSQL outbox's semantics in memory, with fault injection."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ..ports import Backlog, OutboxEvent, Retry
from .batch import MemoryBatch as MemoryBatch
from .faults import FaultQueue
from .listen_connection import ListenConnection
from .rows import DeadEvent as DeadEvent
from .rows import PendingRow as PendingRow
from .rows import StoredRow, fitting_prefix, waits_for_retry
from .rows import event_size as event_size
from .statistics import MemoryOutboxStatistics as MemoryOutboxStatistics


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside trio.run: a row enqueued before the run is available at once
        return -math.inf


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

    _rows: dict[int, StoredRow] = attrs.field(factory=dict)  # in id order: ids only grow
    _dead: list[DeadEvent] = attrs.field(factory=list)
    _locked: set[int] = attrs.field(factory=set)
    _next_id: int = 1
    _faults: FaultQueue = attrs.field(factory=FaultQueue)
    _connections: list[ListenConnection] = attrs.field(factory=list)
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
        self._rows[id] = StoredRow(event, available_at=now, enqueued_at=now)
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
    # Faults queue up per operation and are used one per call, in order (see `FaultQueue`):
    # `fail_next_claim(2)` then `hang_next_claim()` fails two claims and hangs the third.

    def fail_next_claim(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `claim()` calls raise `error` before claiming anything.

        The default error, `relay.OutboxUnreachable`, is what the PostgreSQL outbox raises when the
        database cannot be reached; the relay's supervisor restarts the drainer.
        """
        self._faults.add_failures("claim", n, error)

    def hang_next_claim(self) -> None:
        """Make the next `claim()` wait until it is cancelled, like a claim on a stalled server."""
        self._faults.add_hang("claim")

    def fail_next_settle(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `settle()` calls raise `error` (default `relay.OutboxUnreachable`).

        The claim is then left unsettled, so its rows go back untouched: a commit that never came.
        """
        self._faults.add_failures("settle", n, error)

    def hang_next_settle(self) -> None:
        """Make the next `settle()` wait until it is cancelled; its rows go back untouched."""
        self._faults.add_hang("settle")

    def fail_next_listen(self, n: int = 1, error: Exception | None = None) -> None:
        """Make the next `n` `listen()` calls fail to connect with `error`.

        The default error is `relay.OutboxUnreachable`; every attempt, failed or not, is recorded
        in `statistics().listen_attempts`.
        """
        self._faults.add_failures("listen", n, error)

    def hang_next_listen(self) -> None:
        """Make the next `listen()` connect attempt wait until it is cancelled."""
        self._faults.add_hang("listen")

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

    # -- the Outbox protocol ----------------------------------------------------------------------

    @asynccontextmanager
    async def claim(
        self, limit: int, max_bytes: int | None = None, share_with: int = 0
    ) -> AsyncIterator[MemoryBatch]:
        """Claim up to `limit` available events, oldest first, until the block ends; with
        `max_bytes`, only the oldest whose payload and headers (`event_size`) fit, at least one.

        `share_with` asks PostgreSQL's claim to leave partitions to more claims; here every claim
        takes what it finds, and the keys an open claim holds are what keeps claims apart."""
        self._claims += 1
        await self._faults.apply("claim")
        rows, passed_over = self._claimable(limit)
        fitting = fitting_prefix(rows, max_bytes)
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

    def _claimable(self, limit: int) -> tuple[list[StoredRow], bool]:
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
            if key is not None and waits_for_retry(row, now):
                waiting.setdefault(key, row.event.id)
        chosen: list[StoredRow] = []
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

    async def _settle(
        self,
        batch: MemoryBatch,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int],
        defer: Mapping[int, Retry],
    ) -> None:
        """`MemoryBatch.settle`, after the next fault queued for settles (if any)."""
        await self._faults.apply("settle")
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
        due = [row.available_at for row in self._rows.values() if waits_for_retry(row, now)]
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
        await self._faults.apply("listen")
        send, receive = trio.open_memory_channel[None](math.inf)
        connection = ListenConnection(send, receive)
        self._connections.append(connection)
        try:
            yield connection
        finally:
            self._connections.remove(connection)
            connection.close()
