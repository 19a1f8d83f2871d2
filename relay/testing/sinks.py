"""Sinks for tests: `RecordingSink` records what it is given, `FlakySink` fails or hangs."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import Literal

import attrs
import trio

from ..errors import PartialDelivery
from ..ports import OutboxEvent, Sink

_HANG: Literal["hang"] = "hang"


@attrs.frozen
class Delivery:
    """One batch a `RecordingSink` took, and the trio time it took it."""

    at: float
    events: tuple[OutboxEvent, ...]


@attrs.define(eq=False)
class RecordingSink:
    """A sink that records every batch it is given, in order, and never fails."""

    deliveries: list[Delivery] = attrs.field(factory=list)
    _lot: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)

    @property
    def events(self) -> list[OutboxEvent]:
        """Every event delivered, in order."""
        return [event for delivery in self.deliveries for event in delivery.events]

    @property
    def ids(self) -> list[int]:
        """The id of every event delivered, in order."""
        return [event.id for event in self.events]

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Record `events`."""
        await trio.lowlevel.checkpoint()
        self.deliveries.append(Delivery(trio.current_time(), tuple(events)))
        self._lot.unpark_all()

    async def wait_for(self, count: int) -> None:
        """Return once at least `count` events have been delivered in all."""
        while sum(len(delivery.events) for delivery in self.deliveries) < count:
            await self._lot.park()


@attrs.define(eq=False)
class FlakySink:
    """Delivers through `inner`, failing or hanging on request.

    Per event: `fail(id, times=...)`, or a random `failure_rate` drawn from `rng`; failed events
    are reported with `PartialDelivery`, and later events of a failed event's key in the same batch
    are not delivered (as the `Sink` contract requires). Per batch: `fail_next_batch()` and
    `hang_next_batch()`.
    """

    inner: Sink = attrs.field(factory=RecordingSink)
    failure_rate: float = 0.0
    rng: random.Random = attrs.field(factory=lambda: random.Random(0))
    _failing: dict[int, int | None] = attrs.field(factory=dict)
    _batch_faults: deque[Exception | Literal["hang"]] = attrs.field(factory=deque)

    def fail(self, *ids: int, times: int | None = 1) -> None:
        """Fail each of `ids` its next `times` deliveries (None: every time)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times!r}")
        for id in ids:
            self._failing[id] = times

    def fail_next_batch(self, error: Exception | None = None) -> None:
        """Raise `error` (default `ConnectionError`) for the whole next batch."""
        self._batch_faults.append(error or ConnectionError("injected batch failure"))

    def hang_next_batch(self) -> None:
        """Hang on the next batch until cancelled (e.g. by the delivery timeout)."""
        self._batch_faults.append(_HANG)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Deliver `events` through `inner`, except those chosen to fail."""
        await trio.lowlevel.checkpoint()
        if self._batch_faults:
            fault = self._batch_faults.popleft()
            if fault == _HANG:
                await trio.sleep_forever()
            assert isinstance(fault, Exception)
            raise fault
        failures: dict[int, str] = {}
        failed_keys: set[str] = set()
        deliverable: list[OutboxEvent] = []
        for event in events:
            if event.key is not None and event.key in failed_keys:
                continue  # not delivered, not reported: the relay holds it back
            reason = self._failure(event)
            if reason is None:
                deliverable.append(event)
                continue
            failures[event.id] = reason
            if event.key is not None:
                failed_keys.add(event.key)
        if deliverable:
            await self.inner.deliver(deliverable)
        if failures:
            raise PartialDelivery(failures)

    def _failure(self, event: OutboxEvent) -> str | None:
        if event.id in self._failing:
            times = self._failing[event.id]
            if times is not None:
                if times <= 1:
                    del self._failing[event.id]
                else:
                    self._failing[event.id] = times - 1
            return "injected failure"
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return "injected random failure"
        return None
