"""The coalescing wakeup channel."""

from __future__ import annotations

import pytest
import trio

from relay.wakeups import WakeReason, Wakeups


def test_a_wake_with_none_pending_is_queued() -> None:
    with Wakeups.open() as wakeups:
        assert wakeups.wake(WakeReason.NOTIFY) is True
        assert wakeups.statistics().sent[WakeReason.NOTIFY] == 1


def test_wakes_while_one_is_pending_are_coalesced_and_counted_by_reason() -> None:
    with Wakeups.open() as wakeups:
        wakeups.wake(WakeReason.TICK)
        for _ in range(3):
            assert wakeups.wake(WakeReason.NOTIFY) is False
        wakeups.wake(WakeReason.DUE)
        stats = wakeups.statistics()
    assert stats.sent == {**dict.fromkeys(WakeReason, 0), WakeReason.TICK: 1}
    assert stats.coalesced == {
        **dict.fromkeys(WakeReason, 0),
        WakeReason.NOTIFY: 3,
        WakeReason.DUE: 1,
    }


async def test_receive_returns_every_reason_folded_into_the_wakeup() -> None:
    with Wakeups.open() as wakeups:
        wakeups.wake(WakeReason.TICK)
        wakeups.wake(WakeReason.NOTIFY)
        assert await wakeups.receive() == {WakeReason.TICK, WakeReason.NOTIFY}
        wakeups.wake(WakeReason.DUE)
        assert await wakeups.receive() == {WakeReason.DUE}


async def test_receive_waits_for_a_wake(autojump_clock: trio.testing.MockClock) -> None:
    with Wakeups.open() as wakeups:
        async with trio.open_nursery() as nursery:

            async def wake_later() -> None:
                await trio.sleep(1.5)
                wakeups.wake(WakeReason.MANUAL)

            nursery.start_soon(wake_later)
            assert await wakeups.receive() == {WakeReason.MANUAL}
            assert trio.current_time() == 1.5


def test_receive_nowait_raises_would_block_when_none_is_pending() -> None:
    with Wakeups.open() as wakeups:
        with pytest.raises(trio.WouldBlock):
            wakeups.receive_nowait()
        wakeups.wake(WakeReason.CONNECT)
        assert wakeups.receive_nowait() == {WakeReason.CONNECT}


def test_a_wake_after_close_raises_closed_resource_error() -> None:
    wakeups = Wakeups.open()
    wakeups.close()
    with pytest.raises(trio.ClosedResourceError):
        wakeups.wake(WakeReason.MANUAL)


def test_leaving_the_with_block_closes_the_channel() -> None:
    with Wakeups.open() as wakeups:
        pass
    with pytest.raises(trio.ClosedResourceError):
        wakeups.wake(WakeReason.MANUAL)
