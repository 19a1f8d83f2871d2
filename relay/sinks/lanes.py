"""Key order for sinks that send event by event: one lane per key, the lanes side by side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from ..errors import PartialDelivery, SinkUnavailable
from ..ports import OutboxEvent
from ..reasons import describe_error


@attrs.frozen
class Failure:
    """Why one event was not delivered; `permanent` ones are buried instead of retried."""

    reason: str
    permanent: bool = False


Send = Callable[[OutboxEvent], Awaitable[Failure | None]]
"""Sends one event; returns None when it was delivered, else why not."""


def lanes(events: Sequence[OutboxEvent]) -> list[list[OutboxEvent]]:
    """The events split into runs that must go in order: one per key, one per keyless event."""
    runs: list[list[OutboxEvent]] = []
    by_key: dict[str, list[OutboxEvent]] = {}
    for event in events:
        if event.key is None:
            runs.append([event])
        elif (lane := by_key.get(event.key)) is not None:
            lane.append(event)
        else:
            by_key[event.key] = lane = [event]
            runs.append(lane)
    return runs


async def deliver_in_lanes(
    events: Sequence[OutboxEvent], send: Send, limiter: trio.CapacityLimiter
) -> None:
    """Send each key's events one after the other, the keys concurrently, `limiter` sends at once.

    After an event of a key fails, the later events of that key are not sent. An exception from
    `send` is that one event's (retryable) failure: a bug in the code that sends one event must
    not fail its neighbours on other keys, which a task crashing the nursery would. The exception
    is `SinkUnavailable`: it stops every lane and is raised as it is, outside any group.

    Raises:
        PartialDelivery: some event was not delivered; it names every such event (the held-back
            ones with the reason `held behind event N`), the permanent failures in `permanent`.
        SinkUnavailable: a `send` raised it; the batch is undone by the caller's rollback.
    """
    failures: dict[int, str] = {}
    permanent: set[int] = set()
    unavailable: list[SinkUnavailable] = []

    async def send_lane(lane: list[OutboxEvent], cancel_scope: trio.CancelScope) -> None:
        for index, event in enumerate(lane):
            try:
                async with limiter:
                    failure = await send(event)
            except SinkUnavailable as exc:
                unavailable.append(exc)
                cancel_scope.cancel()  # the rest cannot be delivered either
                return
            except Exception as exc:
                failure = Failure(describe_error(exc))
            if failure is not None:
                failures[event.id] = failure.reason
                if failure.permanent:
                    permanent.add(event.id)
                for later in lane[index + 1 :]:
                    failures[later.id] = f"held behind event {event.id}"
                return

    async with trio.open_nursery() as nursery:
        for lane in lanes(events):
            nursery.start_soon(send_lane, lane, nursery.cancel_scope)
    if unavailable:
        raise unavailable[0]
    if failures:
        raise PartialDelivery(failures, permanent=permanent)
