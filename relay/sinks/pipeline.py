"""Key order for broker sinks at the client's speed: a whole batch in one crossing into asyncio.

`deliver_in_lanes` pays, per event, a trio task, a limiter slot, a cancel scope and a crossing
into asyncio. Here the batch crosses once: one asyncio coroutine runs every lane (one per key, one
per keyless event) side by side, `window` publishes awaiting their ack at once, each lane's next
publish after its previous ack, and returns what happened to each event. So key order in the
broker is exactly `deliver_in_lanes`'s: a key's event is only sent once every earlier event of
that key in the batch is acked, and after one fails the later ones are not sent at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import attrs
import trio

from ..aio_thread import LoopThread
from ..errors import PartialDelivery, SinkUnavailable
from ..ports import OutboxEvent
from ..reasons import describe_error
from .lanes import Failure, lanes

M = TypeVar("M")


@attrs.frozen
class Pipeline(Generic[M]):
    """How one sink turns an event into a message, publishes it, and judges a failure.

    Attributes:
        prepare: on trio: the event's message, or why it cannot be sent (an unroutable topic).
        publish: on asyncio: sends one message, returns once the broker acknowledged it, raises
            when it did not.
        judge: on trio: the failure a `publish` exception is for that event, or `SinkUnavailable`
            when nothing else can be delivered either.
        fatal: the exceptions of `publish` after which no lane sends anything more (a lost
            connection, a missing stream); `judge` turns them into `SinkUnavailable`.
        window: publishes awaiting their acknowledgement at once, across the lanes.
        timeout: seconds the whole batch may take: an event still unacknowledged then fails as
            `judge` says for a `TimeoutError`. One deadline per batch, on trio, rather than a
            timer per publish.
    """

    prepare: Callable[[OutboxEvent], M | Failure]
    publish: Callable[[M], Awaitable[object]]
    judge: Callable[[OutboxEvent, BaseException], Failure | SinkUnavailable]
    fatal: tuple[type[BaseException], ...]
    window: int
    timeout: float


async def _run_lanes(
    runs: Sequence[Sequence[M]],
    publish: Callable[[M], Awaitable[object]],
    fatal: tuple[type[BaseException], ...],
    window: int,
    outcomes: list[tuple[int, BaseException | None]],
) -> None:
    """On asyncio: each run in order, the runs side by side; sets per run, in `outcomes`, how many
    of its items were acknowledged, and the exception that stopped it (None when all were, or
    another run's fatal error stopped it first, or it was cancelled).

    `window` workers take the runs in batch order, each publishing one item at a time: so at most
    `window` publishes await their ack at once, without a semaphore, whose every acquire asks
    asyncio for the running loop through trio-asyncio's patch of it, which costs an exception
    outside trio (a fifth of this loop's time, profiled).
    """
    todo = iter(enumerate(runs))
    stopped = False

    async def worker() -> None:
        nonlocal stopped
        for index, items in todo:  # one iterator shared by the workers: each run taken once
            for acked, item in enumerate(items):
                outcomes[index] = (acked, None)
                if stopped:
                    return
                try:
                    await publish(item)
                except Exception as exc:
                    outcomes[index] = (acked, exc)
                    stopped = stopped or isinstance(exc, fatal)
                    break
            else:
                outcomes[index] = (len(items), None)

    await asyncio.gather(*(worker() for _ in range(min(window, len(runs)))))


async def deliver_pipelined(
    events: Sequence[OutboxEvent], pipeline: Pipeline[M], aio: LoopThread
) -> None:
    """Publish the events in one crossing into `aio`'s loop, each key in order, the keys side by
    side.

    After an event of a key fails, the later events of that key are not sent and are reported
    `held behind event N`. An exception from `prepare` or `publish` is that event's failure (as
    `judge` says for `publish`), never its neighbours' on other keys.

    Raises:
        PartialDelivery: some event was not delivered; it names every such event, the permanent
            failures in `permanent`.
        SinkUnavailable: `judge` said so for some event; the caller's rollback undoes the batch.
    """
    runs = lanes(events)
    messages: list[list[M]] = []
    stops: list[Failure | None] = []
    for lane in runs:
        sendable: list[M] = []
        stop: Failure | None = None
        for event in lane:
            try:
                prepared = pipeline.prepare(event)
            except Exception as exc:  # a bug preparing one event fails that event only
                prepared = Failure(describe_error(exc))
            if isinstance(prepared, Failure):
                stop = prepared
                break
            sendable.append(prepared)
        messages.append(sendable)
        stops.append(stop)
    outcomes: list[tuple[int, BaseException | None]] = [(0, None)] * len(runs)
    with trio.move_on_after(pipeline.timeout) as deadline:
        await aio.run(
            _run_lanes, messages, pipeline.publish, pipeline.fatal, pipeline.window, outcomes
        )
    if deadline.cancelled_caught:
        late = TimeoutError(f"no acknowledgement within {pipeline.timeout:g}s")
        outcomes = [
            (acked, late if error is None and acked < len(sendable) else error)
            for (acked, error), sendable in zip(outcomes, messages, strict=True)
        ]
    failures: dict[int, str] = {}
    permanent: set[int] = set()
    unavailable: SinkUnavailable | None = None
    for lane, sendable, stop, (acked, error) in zip(runs, messages, stops, outcomes, strict=True):
        if error is not None:
            judged = pipeline.judge(lane[acked], error)
            if isinstance(judged, SinkUnavailable):
                unavailable = unavailable or judged
                continue
            failure: Failure | None = judged
        elif acked < len(sendable):
            failure = Failure("not sent: the batch was stopped")
        else:
            failure = stop
        if failure is None:
            continue
        failed = lane[acked]
        failures[failed.id] = failure.reason
        if failure.permanent:
            permanent.add(failed.id)
        for later in lane[acked + 1 :]:
            failures[later.id] = f"held behind event {failed.id}"
    if unavailable is not None:
        raise unavailable
    if failures:
        raise PartialDelivery(failures, permanent=permanent)
