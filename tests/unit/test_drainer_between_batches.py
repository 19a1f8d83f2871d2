"""The drainer between batches: a graceful stop, and a batch cut short by other relays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from relay import OutboxEvent, open_relay
from relay.drainer import CONTENTION_PAUSE
from relay.testing import MemoryOutbox

from .conftest import make_config


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_stop_claiming_lets_the_batches_in_flight_finish_then_claims_no_more(
    autojump_clock: trio.testing.MockClock, in_flight: int
) -> None:
    outbox = MemoryOutbox()
    delivered: list[int] = []
    entered = 0
    all_entered = trio.Event()

    async def slow_handler(events: Sequence[OutboxEvent]) -> None:
        nonlocal entered
        entered += 1
        if entered == in_flight:
            all_entered.set()
        await trio.sleep(1.0)
        delivered.extend(event.id for event in events)

    for n in range(25):  # batch size 10: three batches' worth
        outbox.enqueue("t", n)
    config = make_config(claims_in_flight=in_flight)
    async with open_relay(config, slow_handler, outbox=outbox) as handle:
        await all_entered.wait()
        started = trio.current_time()
        await handle.stop_claiming()
        assert trio.current_time() == started + 1.0  # waited for every batch in flight
        claims = outbox.statistics().claims
        handle.wake()
        await trio.sleep(30)  # wakeups and polls come and go
        assert outbox.statistics().claims == claims
    assert sorted(delivered) == list(range(1, 10 * in_flight + 1))
    assert len(outbox.pending()) == 25 - 10 * in_flight


async def test_stop_claiming_returns_at_once_when_no_batch_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with open_relay(make_config(), _ignore, outbox=outbox) as handle:
        await trio.sleep(1)
        started = trio.current_time()
        await handle.stop_claiming()
        assert trio.current_time() == started


async def _ignore(events: Sequence[OutboxEvent]) -> None:
    pass


class _ContendedAtFirst:
    """A MemoryOutbox whose first claims come back empty, as if other relays held every key."""

    def __init__(self, inner: MemoryOutbox, contended_claims: int) -> None:
        self.inner = inner
        self.left = contended_claims
        self.claim_times: list[float] = []

    @asynccontextmanager
    async def claim(
        self, limit: int, max_bytes: int | None = None, share_with: int = 0
    ) -> AsyncIterator[object]:
        self.claim_times.append(trio.current_time())
        if self.left:
            self.left -= 1
            yield _Empty()
            return
        async with self.inner.claim(limit, max_bytes, share_with) as batch:
            yield batch

    def listen(self) -> AbstractAsyncContextManager[AsyncIterator[None]]:
        return self.inner.listen()


class _Empty:
    events: tuple[OutboxEvent, ...] = ()
    contended = True
    next_due = None

    async def settle(self, **_: object) -> None:
        pass


async def test_a_batch_emptied_by_contention_is_claimed_again_shortly_not_at_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inner = MemoryOutbox()
    outbox = _ContendedAtFirst(inner, contended_claims=3)
    inner.enqueue("t", 1, key="k")
    delivered: list[int] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        delivered.extend(event.id for event in events)

    async with open_relay(make_config(), handler, outbox=outbox):  # type: ignore[arg-type]
        await trio.sleep(1)
    assert delivered == [1]
    assert outbox.claim_times[:4] == [
        0.0,
        CONTENTION_PAUSE,
        2 * CONTENTION_PAUSE,
        3 * CONTENTION_PAUSE,
    ]
