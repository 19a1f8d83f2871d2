"""The drainer: drains until a short batch, delivers within a timeout, settles in key order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from types import TracebackType

import attrs
import trio

from relay import (
    Backoff,
    Config,
    OutboxEvent,
    OutboxUnreachable,
    PartialDelivery,
    SinkUnavailable,
    WakeReason,
    open_relay,
)
from relay.outages import Outage
from relay.ports import Retry
from relay.settlement import settle_plan
from relay.testing import FlakySink, MemoryOutbox, RecordingSink

from .conftest import make_config


def timeline(sink: RecordingSink) -> list[tuple[float, list[int]]]:
    return [(delivery.at, [event.id for event in delivery.events]) for delivery in sink.deliveries]


async def test_a_backlog_of_five_batches_is_drained_on_one_wakeup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(claims_in_flight=1)  # one lane: the claims can be counted exactly
    outbox, sink = MemoryOutbox(), RecordingSink()
    for n in range(5 * config.batch_size):
        outbox.enqueue("t", n)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await trio.sleep(1.0)
        stats = handle.statistics()
    assert (stats.claims, stats.batches, stats.empty_claims) == (6, 5, 1)  # 5 full, 1 empty
    assert sum(stats.wakeups.values()) == 1  # the listener's catch-up at connect
    assert sink.ids == list(range(1, 51))
    assert {delivery.at for delivery in sink.deliveries} == {0.0}


async def test_a_thousand_notifications_during_one_drain_cost_one_extra_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()

    async def slow_sink(events: Sequence[OutboxEvent]) -> None:
        await sink.deliver(events)
        await trio.sleep(1.0)

    config = make_config(batch_size=2000, poll_interval=100.0)
    async with open_relay(config, slow_sink, outbox=outbox) as handle:
        assert handle.statistics().claims == 1  # the catch-up drain at connect
        outbox.enqueue("first", 0)
        await trio.sleep(0.5)  # its batch is in the sink until t=1
        for n in range(1000):
            outbox.enqueue("burst", n)
            await trio.lowlevel.checkpoint()
        await trio.sleep(2.0)
        stats = handle.statistics()
    assert stats.claims == 1 + 2
    assert stats.wakeups[WakeReason.NOTIFY] == 2
    assert stats.coalesced[WakeReason.NOTIFY] == 999
    assert [(at, len(ids)) for at, ids in timeline(sink)] == [(0.0, 1), (1.0, 1000)]


async def test_a_failing_event_holds_back_later_events_of_its_key_but_not_of_other_keys(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    flaky = FlakySink(sink)
    a1 = outbox.enqueue("t", 1, key="A")
    b1 = outbox.enqueue("t", 2, key="B")
    a2 = outbox.enqueue("t", 3, key="A")
    b2 = outbox.enqueue("t", 4, key="B")
    flaky.fail(a1)
    async with open_relay(config, flaky, outbox=outbox) as handle:
        await sink.wait_for(4)
        await trio.sleep(0.5)
        stats = handle.statistics()
    assert timeline(sink) == [(0.0, [b1, b2]), (1.0, [a1, a2])]
    assert (stats.delivered, stats.retried, stats.held) == (4, 1, 1)


async def test_partial_delivery_retries_only_the_failed_events(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()

    async def half(events: Sequence[OutboxEvent]) -> None:
        await sink.deliver([event for event in events if event.id != 2])
        if any(event.id == 2 for event in events):
            raise PartialDelivery({2: "rejected"})

    for n in range(3):
        outbox.enqueue("t", n)
    async with open_relay(config, half, outbox=outbox):
        await trio.sleep(0.5)
        [row] = outbox.pending_rows()
        assert (row.event.id, row.event.attempts, row.available_at, row.last_error) == (
            2,
            1,
            1.0,
            "rejected",
        )
    assert timeline(sink) == [(0.0, [1, 3])]


async def test_a_permanent_partial_failure_is_buried_at_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()

    async def reject(events: Sequence[OutboxEvent]) -> None:
        raise PartialDelivery(
            {event.id: "400 Bad Request" for event in events},
            permanent=[event.id for event in events],
        )

    event_id = outbox.enqueue("t", 1)
    async with open_relay(config, reject, outbox=outbox) as handle:
        await trio.sleep(0.5)
        assert handle.statistics().dead == 1
    assert [(dead.event.id, dead.reason) for dead in outbox.dead()] == [
        (event_id, "400 Bad Request")
    ]


async def test_events_held_behind_a_buried_event_are_delivered_at_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """Not at the next poll: once their key's failed event is dead, nothing holds them."""
    outbox, sink = MemoryOutbox(), RecordingSink()

    async def reject_the_first(events: Sequence[OutboxEvent]) -> None:
        if events[0].id == first:
            raise PartialDelivery({first: "400 Bad Request"}, permanent=[first])
        await sink.deliver(events)

    first = outbox.enqueue("t", 1, key="k")
    second = outbox.enqueue("t", 2, key="k")
    async with open_relay(config, reject_the_first, outbox=outbox):
        await sink.wait_for(1)
    assert timeline(sink) == [(0.0, [second])]
    assert [dead.event.id for dead in outbox.dead()] == [first]


async def test_a_sink_error_fails_the_whole_batch(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    flaky = FlakySink()
    flaky.fail_next_batch(ConnectionError("broker down"))
    for n in range(3):
        outbox.enqueue("t", n)
    async with open_relay(config, flaky, outbox=outbox) as handle:
        await trio.sleep(0.5)
        assert handle.statistics().retried == 3
        assert {row.last_error for row in outbox.pending_rows()} == {"ConnectionError: broker down"}


async def test_a_hanging_sink_times_out_the_batch_is_retried_and_its_claim_is_closed(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    flaky = FlakySink(sink)
    flaky.hang_next_batch()
    event_id = outbox.enqueue("t", 1)
    async with open_relay(config, flaky, outbox=outbox):
        await trio.sleep(config.delivery_timeout - 0.5)
        assert outbox.statistics().open_claims == 1  # the transaction is open while it hangs
        await trio.sleep(1.0)
        assert outbox.statistics().open_claims == 0
        [row] = outbox.pending_rows()
        assert (row.event.attempts, row.available_at, row.last_error) == (
            1,
            3.0,
            "delivery timed out after 2.0s",
        )
        await sink.wait_for(1)
    assert timeline(sink) == [(3.0, [event_id])]  # timed out at 2.0, retried 1.0 later


async def test_an_event_is_buried_after_max_attempts(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    flaky = FlakySink()
    event_id = outbox.enqueue("t", 1)
    flaky.fail(event_id, times=None)
    async with open_relay(config, flaky, outbox=outbox) as handle:
        await trio.sleep(10.0)
        stats = handle.statistics()
    [dead] = outbox.dead()
    # attempts at t=0, 1 (after 1 s) and 3 (after 2 s); the third is the last of max_attempts=3
    assert (dead.event.id, dead.event.attempts, dead.reason, dead.failed_at) == (
        event_id,
        3,
        "injected failure",
        3.0,
    )
    assert (stats.retried, stats.dead, stats.delivered) == (2, 1, 0)
    assert outbox.pending() == []


async def test_retry_jitter_comes_from_the_injected_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(base=4.0, jitter=0.5)
    config = make_config(retry_backoff=backoff)
    outbox, flaky = MemoryOutbox(), FlakySink()
    flaky.fail(outbox.enqueue("t", 1))
    async with open_relay(config, flaky, outbox=outbox, rng=random.Random(7)):
        await trio.sleep(0.5)
        [row] = outbox.pending_rows()
    assert row.available_at == backoff.delay(0, random.Random(7))


async def test_a_drainer_that_crashed_is_restarted_and_drains_at_once(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    outbox.fail_next_settle(error=RuntimeError("a bug of relay's own"))
    event_id = outbox.enqueue("t", 1)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await sink.wait_for(2)
        await trio.sleep(0.5)
        stats = handle.statistics()
    # delivered at 0, settle failed (rolled back): a duplicate, at least once; no notification
    # announces the row again, the restarted drainer finds it by itself after the backoff
    assert timeline(sink) == [(0.0, [event_id]), (0.25, [event_id])]
    assert (stats.restarts, stats.delivered) == (1, 1)
    assert outbox.pending() == []


async def test_a_database_lost_at_settle_is_waited_out_not_counted_as_a_restart(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    outbox.fail_next_settle(
        error=OutboxUnreachable("settle failed at db: server closed the connection")
    )
    event_id = outbox.enqueue("t", 1)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await trio.sleep(0.125)
        [(who, outage)] = handle.statistics().outages.items()
        assert (who, outage.what, outage.tries) == ("drainer", "database", 1)
        await sink.wait_for(2)
        await trio.sleep(0.5)
        stats = handle.statistics()
    # rolled back at 0 (a duplicate, at least once), claimed again after the outage backoff
    assert timeline(sink) == [(0.0, [event_id]), (0.25, [event_id])]
    assert (stats.restarts, stats.delivered, stats.retried, stats.outages) == (0, 1, 0, {})
    assert outbox.pending() == [] and outbox.dead() == []


# Jitter in the outage backoff, so a wait drawn from any other source than the injected rng shows.
JITTERED_OUTAGES = Backoff(base=0.25, cap=4.0, jitter=0.5)


async def test_a_database_outage_is_recorded_with_its_reason_and_waited_with_the_injected_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    outbox.fail_next_settle(error=OutboxUnreachable("settle failed at db: connection lost\nmore"))
    event_id = outbox.enqueue("t", 1)
    config = make_config(outage_backoff=JITTERED_OUTAGES)
    async with open_relay(config, sink, outbox=outbox, rng=random.Random(7)) as handle:
        await trio.sleep(0.1)
        outages = dict(handle.statistics().outages)
        await sink.wait_for(2)
    assert outages == {"drainer": Outage("database", "settle failed at db: connection lost", 0, 1)}
    wait = JITTERED_OUTAGES.delay(0, random.Random(7))
    assert timeline(sink) == [(0.0, [event_id]), (wait, [event_id])]


@attrs.define
class ConnectingSink:
    sink: RecordingSink
    entered: int = 0
    exited: int = 0

    async def __aenter__(self) -> ConnectingSink:
        self.entered += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exited += 1

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        assert self.entered > self.exited
        await self.sink.deliver(events)


async def test_a_sink_that_is_an_async_context_manager_is_entered_for_each_drainer_run(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    sink = ConnectingSink(RecordingSink())
    async with open_relay(config, sink, outbox=outbox):
        outbox.enqueue("t", 1)
        await sink.sink.wait_for(1)
        assert (sink.entered, sink.exited) == (1, 0)
        # the drainer crashes and is restarted: the sink reconnects
        outbox.fail_next_claim(error=RuntimeError("a bug of relay's own"))
        outbox.enqueue("t", 2)
        await sink.sink.wait_for(2)
        assert (sink.entered, sink.exited) == (2, 1)
    assert (sink.entered, sink.exited) == (2, 2)


async def test_a_plain_async_callable_is_a_sink(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox, seen = MemoryOutbox(), list[object]()

    async def handler(events: Sequence[OutboxEvent]) -> None:
        seen.extend(event.payload for event in events)

    async with open_relay(config, handler, outbox=outbox):
        outbox.enqueue("t", {"n": 1})
        await trio.sleep(0.5)
    assert seen == [{"n": 1}]


def event(id: int, key: str | None, attempts: int = 0) -> OutboxEvent:
    return OutboxEvent.create(id, "t", None, key=key, attempts=attempts)


def test_settle_plan_holds_every_event_after_the_first_failure_of_its_key() -> None:
    events = [event(1, "A"), event(2, "B"), event(3, "A"), event(4, None), event(5, "A")]
    # the sink says 5 failed and 3 was delivered: both came after 1 failed, both are held
    plan = settle_plan(events, {1: "x", 5: "y"}, config=make_config(), rng=random.Random(0))
    assert plan.retry == {1: Retry(delay=1.0, reason="x")}
    assert plan.bury == {}
    assert plan.hold == {3, 5}


def test_settle_plan_does_not_order_events_without_a_key() -> None:
    events = [event(1, None), event(2, None)]
    plan = settle_plan(events, {1: "x"}, config=make_config(), rng=random.Random(0))
    assert (set(plan.retry), plan.hold) == ({1}, frozenset())


def test_settle_plan_buries_an_event_on_its_last_attempt_and_still_holds_its_key() -> None:
    events = [event(1, "A", attempts=2), event(2, "A")]
    plan = settle_plan(events, {1: "x"}, config=make_config(max_attempts=3), rng=random.Random(0))
    assert (dict(plan.retry), dict(plan.bury), set(plan.hold)) == ({}, {1: "x"}, {2})


def test_settle_plan_backs_off_by_the_events_attempts() -> None:
    plan = settle_plan(
        [event(1, None, attempts=2)],
        {1: "x"},
        config=make_config(max_attempts=10),
        rng=random.Random(0),
    )
    assert plan.retry[1].delay == 4.0


@attrs.define
class BrokerSink(ConnectingSink):
    """Loses its broker on the first batch it is given."""

    lost: bool = False

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        if not self.lost:
            self.lost = True
            raise SinkUnavailable("connection reset")
        await super().deliver(events)


async def test_a_sink_that_lost_its_broker_fails_the_batch_then_is_entered_again(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """SinkUnavailable: the batch is put back untouched, the drainer leaves the sink, waits its
    outage backoff and enters it again; no restart, no attempt."""
    outbox = MemoryOutbox()
    sink = BrokerSink(RecordingSink())
    event_id = outbox.enqueue("t", 1)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await sink.sink.wait_for(1)
        await trio.sleep(0.5)  # settled
        stats = handle.statistics()
        assert (sink.entered, sink.exited) == (2, 1)
    assert (stats.retried, stats.restarts, stats.delivered, stats.outages) == (0, 0, 1, {})
    # lost at 0; delivered after the outage backoff, first attempt
    [(at, ids)] = timeline(sink.sink)
    assert (ids, sink.sink.deliveries[0].events[0].attempts) == ([event_id], 0)
    assert at == 0.25  # the outage backoff in these tests


async def test_a_sink_outage_is_recorded_with_its_reason_and_waited_with_the_injected_rng(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    sink = BrokerSink(RecordingSink())
    event_id = outbox.enqueue("t", 1)
    config = make_config(outage_backoff=JITTERED_OUTAGES)
    async with open_relay(config, sink, outbox=outbox, rng=random.Random(7)) as handle:
        await trio.sleep(0.1)
        outages = dict(handle.statistics().outages)
        await sink.sink.wait_for(1)
    assert outages == {"sink": Outage("sink", "connection reset", 0, 1)}
    wait = JITTERED_OUTAGES.delay(0, random.Random(7))
    assert timeline(sink.sink) == [(wait, [event_id])]


async def test_a_retry_scheduled_by_the_last_batch_of_a_drain_is_claimed_when_due(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    """The claim did not see that retry: the drainer reports it to the ticker itself."""
    outbox, sink = MemoryOutbox(), RecordingSink()
    flaky = FlakySink(inner=sink)
    flaky.fail(1)
    outbox.enqueue("t", 0)
    poll_far_away = attrs.evolve(config, poll_interval=3600.0)
    async with open_relay(poll_far_away, flaky, outbox=outbox) as handle:
        await trio.sleep(5)
        assert timeline(sink) == [(1.0, [1])]  # failed at 0, retried after the 1 s backoff
        assert handle.statistics().wakeups[WakeReason.DUE] == 1


async def test_batches_are_bounded_by_bytes_and_a_cut_batch_does_not_end_the_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ten 1 kB events, 2.5 kB per batch: five batches of two in one drain, none left for a poll."""
    config = make_config(batch_size=10, batch_bytes=2500, poll_interval=3600.0)
    outbox, sink = MemoryOutbox(), RecordingSink()
    for _ in range(10):
        outbox.enqueue("t", "x" * 1000)
    async with open_relay(config, sink, outbox=outbox):
        await sink.wait_for(10)
    assert [len(delivery.events) for delivery in sink.deliveries] == [2, 2, 2, 2, 2]
    assert {delivery.at for delivery in sink.deliveries} == {0.0}
