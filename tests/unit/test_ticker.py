"""The ticker: the fallback poll, retries at their due time, the silent-listener watch."""

from __future__ import annotations

import trio

from relay import Backoff, Config, WakeReason, open_relay
from relay.listener import Listener
from relay.testing import FlakySink, MemoryOutbox, RecordingSink
from relay.ticker import Ticker
from relay.wakeups import DrainReport, Wakeups

from .conftest import make_config


async def test_without_notifications_work_is_found_at_exactly_the_poll_interval(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        outbox.silence_listeners()
        await trio.sleep(1.0)
        outbox.enqueue("t", 1)
        await sink.wait_for(1)
        assert trio.current_time() == config.poll_interval == 5.0
        assert handle.statistics().wakeups[WakeReason.TICK] == 1


async def test_polls_keep_their_interval(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        outbox.silence_listeners()
        for at in (6.0, 12.0):
            await trio.sleep_until(at)
            outbox.enqueue("t", at)
        await sink.wait_for(2)
        assert handle.statistics().wakeups[WakeReason.TICK] == 3
    assert [delivery.at for delivery in sink.deliveries] == [10.0, 15.0]


async def test_a_retry_is_claimed_at_exactly_its_due_time_not_at_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(poll_interval=1000.0, retry_backoff=Backoff(base=1.5, jitter=0.0))
    outbox, sink = MemoryOutbox(), RecordingSink()
    flaky = FlakySink(sink)
    async with open_relay(config, flaky, outbox=outbox) as handle:
        await trio.sleep(2.0)
        flaky.fail(outbox.enqueue("t", 1))
        await sink.wait_for(1)
        assert trio.current_time() == 2.0 + 1.5
        stats = handle.statistics()
    assert (stats.wakeups[WakeReason.DUE], stats.wakeups[WakeReason.TICK]) == (1, 0)


async def test_a_silent_listener_is_recycled_at_exactly_the_threshold(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    assert (config.poll_interval, config.silent_listener_threshold) == (5.0, 3)
    outbox, sink = MemoryOutbox(), RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        outbox.silence_listeners()  # connected, and deaf
        for poll in (5.0, 10.0, 15.0):
            await trio.sleep_until(poll - 1.0)
            assert handle.statistics().listener_recycles == 0
            outbox.enqueue("t", poll)
        await trio.sleep_until(19.0)
        stats = handle.statistics()
    assert [delivery.at for delivery in sink.deliveries] == [5.0, 10.0, 15.0]
    assert outbox.statistics().listen_attempts == (0.0, 15.0)  # reconnected at the third poll
    assert stats.listener_recycles == 1
    assert stats.wakeups[WakeReason.CONNECT] == 2  # the new connection catches up
    assert stats.restarts == 0  # a recycle is not a crash


async def test_a_poll_that_finds_nothing_breaks_the_silent_streak(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        outbox.silence_listeners()
        for poll in (5.0, 10.0, 20.0, 25.0, 30.0):  # nothing for the poll at 15
            await trio.sleep_until(poll - 1.0)
            outbox.enqueue("t", poll)
            await trio.sleep_until(poll + 1.0)
            assert handle.statistics().listener_recycles == (1 if poll == 30.0 else 0)
    assert outbox.statistics().listen_attempts == (0.0, 30.0)


async def test_a_notification_resets_the_silent_streak(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    send, receive = trio.open_memory_channel[DrainReport](10)
    silent = DrainReport(frozenset({WakeReason.TICK}), found_fresh=True, next_due_at=None)
    heard = DrainReport(
        frozenset({WakeReason.TICK, WakeReason.NOTIFY}), found_fresh=True, next_due_at=None
    )
    with Wakeups.open() as wakeups:
        listener = Listener(outbox, wakeups)
        ticker = Ticker(config, wakeups, receive, listener)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.run)
            await nursery.start(ticker.run)
            for report in (silent, silent, heard, silent, silent):
                await send.send(report)
            await trio.sleep(1.0)
            assert ticker.statistics().silent_polls == 2
            assert listener.statistics().recycles == 0
            await send.send(silent)
            await trio.sleep(1.0)
            assert listener.statistics().recycles == 1
            assert ticker.statistics().silent_polls == 0
            nursery.cancel_scope.cancel()


async def test_the_earliest_of_poll_and_due_time_wins(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    send, receive = trio.open_memory_channel[DrainReport](10)
    with Wakeups.open() as wakeups:
        ticker = Ticker(config, wakeups, receive, Listener(MemoryOutbox(), wakeups))
        async with trio.open_nursery() as nursery:
            await nursery.start(ticker.run)
            await send.send(DrainReport(frozenset(), found_fresh=False, next_due_at=2.5))
            assert await wakeups.receive() == {WakeReason.DUE}
            assert trio.current_time() == 2.5
            assert await wakeups.receive() == {WakeReason.TICK}
            assert trio.current_time() == 5.0
            await send.send(DrainReport(frozenset(), found_fresh=False, next_due_at=12.0))
            assert await wakeups.receive() == {WakeReason.TICK}
            assert trio.current_time() == 10.0
            assert await wakeups.receive() == {WakeReason.DUE}
            assert trio.current_time() == 12.0
            nursery.cancel_scope.cancel()


async def test_statistics_show_the_next_due_time_until_it_has_come(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    send, receive = trio.open_memory_channel[DrainReport](10)
    with Wakeups.open() as wakeups:
        ticker = Ticker(config, wakeups, receive, Listener(MemoryOutbox(), wakeups))
        async with trio.open_nursery() as nursery:
            await nursery.start(ticker.run)
            assert ticker.statistics().next_due_at is None
            await send.send(DrainReport(frozenset(), found_fresh=False, next_due_at=2.5))
            await trio.sleep(1.0)
            assert ticker.statistics().next_due_at == 2.5
            await trio.sleep(2.0)
            assert ticker.statistics().next_due_at is None
            nursery.cancel_scope.cancel()
