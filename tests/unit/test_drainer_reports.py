"""What the drainer tells others: batch reports to observers, drain reports to the ticker."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from relay import OutboxEvent, open_relay
from relay.drainer_reports import BatchReport
from relay.testing import MemoryOutbox, RecordingSink

from .conftest import make_config


async def test_observers_hear_of_batches_with_events_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, reports = MemoryOutbox(), list[BatchReport]()
    async with open_relay(make_config(), RecordingSink(), outbox=outbox) as handle:
        handle.add_batch_observer(reports.append)
        await trio.sleep(12.0)  # the polls at 5 and 10 claim nothing
        assert handle.statistics().empty_claims == 3
        assert reports == []
        id = outbox.enqueue("t", 1)
        await trio.sleep(1.0)
    [report] = reports
    assert (report.claimed, [event.id for event in report.delivered]) == (1, [id])


async def test_a_removed_observer_hears_nothing_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, kept, removed = MemoryOutbox(), list[BatchReport](), list[BatchReport]()
    async with open_relay(make_config(), RecordingSink(), outbox=outbox) as handle:
        handle.add_batch_observer(kept.append)
        handle.add_batch_observer(removed.append)
        outbox.enqueue("t", 1)
        await trio.sleep(1.0)
        handle.remove_batch_observer(removed.append)
        outbox.enqueue("t", 2)
        await trio.sleep(1.0)
    assert [len(kept), len(removed)] == [2, 1]


async def test_a_drain_cut_short_by_stop_claiming_is_not_reported_as_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    entered = trio.Event()

    async def slow_handler(events: Sequence[OutboxEvent]) -> None:
        entered.set()
        await trio.sleep(1.0)

    for n in range(25):  # batch size 10: the drain would go on after the first batch
        outbox.enqueue("t", n)
    async with open_relay(make_config(), slow_handler, outbox=outbox) as handle:
        with trio.fail_after(1.0):  # the first drain starts at once
            await entered.wait()
        await handle.stop_claiming()
        await trio.sleep(10.0)
        assert handle.statistics().last_drain_at is None
