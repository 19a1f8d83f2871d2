"""The listener: a wakeup per notification, a catch-up wakeup per (re)connect."""

from __future__ import annotations

from functools import partial

import trio

from relay import Backoff, Config, OutboxUnreachable, WakeReason, open_relay, run_relay
from relay.listener import Listener, ListenerStatistics
from relay.outages import Outages, Waiter
from relay.testing import MemoryOutbox, RecordingSink
from relay.wakeups import Wakeups


async def test_the_listener_wakes_once_for_connect_then_once_per_notification(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    with Wakeups.open() as wakeups:
        listener = Listener(outbox, wakeups)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            assert listener.connected
            assert await wakeups.receive() == {WakeReason.CONNECT}
            outbox.enqueue("t", 1)
            assert await wakeups.receive() == {WakeReason.NOTIFY}
            nursery.cancel_scope.cancel()
        assert not listener.connected
        assert listener.statistics().notifications == 1


async def test_a_lost_connection_is_waited_out_and_reconnected_by_the_listener_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An outage, not a crash: the listener waits its backoff, reconnects, and never raises."""
    outbox, outages = MemoryOutbox(), Outages()
    waiter = Waiter("listener", "database", Backoff(base=0.25, cap=4.0, jitter=0.0), outages)
    with Wakeups.open() as wakeups:
        listener = Listener(outbox, wakeups, waiter)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            await trio.sleep(1.0)
            outbox.fail_next_listen(error=OutboxUnreachable("connect failed: connection refused"))
            outbox.drop_listeners()  # lost at 1.0; refused at 1.25, connected at 1.75
            await trio.sleep(0.125)
            assert not listener.connected
            assert outages.current()["listener"].reason == "the listen connection ended"
            await trio.sleep(0.25)
            assert outages.current()["listener"].reason == "connect failed: connection refused"
            assert outages.current()["listener"].tries == 2
            await trio.sleep(0.5)
            assert listener.connected
            assert outages.current() == {}
            nursery.cancel_scope.cancel()
    assert outbox.statistics().listen_attempts == (0.0, 1.25, 1.75)


async def test_a_recycled_listener_reconnects_at_once_by_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    with Wakeups.open() as wakeups:
        listener = Listener(outbox, wakeups)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            await trio.sleep(1.0)
            listener.recycle()
            await trio.sleep(1.0)
            assert listener.statistics().connects == 2
            assert outbox.statistics().listen_attempts == (0.0, 1.0)
            assert wakeups.statistics().sent[WakeReason.CONNECT] == 1
            assert wakeups.statistics().coalesced[WakeReason.CONNECT] == 1
            nursery.cancel_scope.cancel()


async def test_a_listener_that_cannot_connect_tries_again_at_exactly_the_outage_backoff_times(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    for _ in range(3):
        outbox.fail_next_listen(error=OutboxUnreachable("connection refused"))
    event_id = outbox.enqueue("t", 1)  # before anyone listens: no notification
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(run_relay, config, sink, outbox=outbox))
        assert trio.current_time() == 1.75  # started only once LISTEN is up
        await sink.wait_for(1)
        nursery.cancel_scope.cancel()
    assert outbox.statistics().listen_attempts == (0.0, 0.25, 0.75, 1.75)
    assert handle.statistics().restarts == 0  # an outage is waited out, not a crash
    assert [(delivery.at, delivery.events[0].id) for delivery in sink.deliveries] == [
        (1.75, event_id)
    ]


async def test_a_reconnected_listener_sends_a_catch_up_wakeup(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        await trio.sleep(1.0)
        outbox.fail_next_listen()
        outbox.drop_listeners()  # lost at 1.0; reconnect fails at 1.25, succeeds at 1.75
        await trio.sleep(0.125)
        assert not handle.statistics().listener_connected
        event_id = outbox.enqueue("t", 1)  # nobody hears it
        await sink.wait_for(1)
        stats = handle.statistics()
    assert outbox.statistics().listen_attempts == (0.0, 1.25, 1.75)
    assert [(delivery.at, delivery.events[0].id) for delivery in sink.deliveries] == [
        (1.75, event_id)
    ]
    assert stats.wakeups[WakeReason.CONNECT] == 2
    assert stats.listener_connected


def test_a_listener_that_never_ran_is_not_connected_and_has_counted_nothing() -> None:
    with Wakeups.open() as wakeups:
        listener = Listener(MemoryOutbox(), wakeups)
        assert not listener.connected
        assert listener.statistics() == ListenerStatistics(
            connected=False, connects=0, notifications=0, recycles=0
        )


async def test_every_connect_notification_and_recycle_is_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    with Wakeups.open() as wakeups:
        listener = Listener(outbox, wakeups)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            for _ in range(2):
                listener.recycle()
                await trio.sleep(1.0)
            for n in range(3):
                outbox.enqueue("t", n)
                with trio.fail_after(1.0):  # a lost notification would hang here
                    await wakeups.receive()
            # A wakeup left pending by a reconnect can be received before the listener has
            # counted the last notification: let it finish first.
            await trio.testing.wait_all_tasks_blocked()
            stats = listener.statistics()
            nursery.cancel_scope.cancel()
    assert stats == ListenerStatistics(connected=True, connects=3, notifications=3, recycles=2)


async def test_recycle_after_the_listener_stopped_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with Wakeups.open() as wakeups:
        listener = Listener(MemoryOutbox(), wakeups)
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            nursery.cancel_scope.cancel()
        listener.recycle()
        assert listener.statistics().recycles == 0
