"""Claims in flight: the next claim overlaps the current delivery, never sharing a key."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio

from relay import OutboxEvent, OutboxUnreachable, SinkUnavailable, open_relay
from relay.testing import MemoryOutbox

from .conftest import make_config


@attrs.define
class SlowSink:
    """Takes `seconds` per batch, recording which batches were in it at once."""

    seconds: float = 1.0
    in_sink: int = 0
    most_at_once: int = 0
    # (start time, ids) per batch, in the order the batches entered
    batches: list[tuple[float, list[int]]] = attrs.field(factory=list)
    unavailable_once: bool = False

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        self.in_sink += 1
        self.most_at_once = max(self.most_at_once, self.in_sink)
        try:
            self.batches.append((trio.current_time(), [event.id for event in events]))
            await trio.sleep(self.seconds)
            if self.unavailable_once and len(self.batches) == 2:
                self.unavailable_once = False
                raise SinkUnavailable("the broker went away")
        finally:
            self.in_sink -= 1

    def ids_by_key(self, keys: dict[int, str]) -> dict[str, list[int]]:
        order: dict[str, list[int]] = {}
        for _, ids in sorted(self.batches, key=lambda batch: batch[0]):
            for id in ids:
                order.setdefault(keys[id], []).append(id)
        return order


def _enqueue(outbox: MemoryOutbox, count: int, keys: int) -> dict[int, str]:
    return {outbox.enqueue("t", n, key=f"k{n % keys}"): f"k{n % keys}" for n in range(count)}


@pytest.mark.parametrize("in_flight", [2, 3])
async def test_a_backlog_is_delivered_with_that_many_batches_in_the_sink_at_once(
    autojump_clock: trio.testing.MockClock, in_flight: int
) -> None:
    outbox, sink = MemoryOutbox(), SlowSink()
    keys = _enqueue(outbox, 200, keys=50)
    async with open_relay(make_config(claims_in_flight=in_flight), sink, outbox=outbox):
        await trio.sleep(60)
    assert sink.most_at_once == in_flight
    delivered = [id for _, ids in sink.batches for id in ids]
    assert sorted(delivered) == sorted(keys)  # each once
    for key, ids in sink.ids_by_key(keys).items():
        assert ids == sorted(ids), f"key {key} out of order"
    assert outbox.pending() == []


async def test_batches_in_flight_never_share_a_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), SlowSink()
    keys = _enqueue(outbox, 100, keys=1)  # one key: nothing for a second claim to take
    async with open_relay(make_config(claims_in_flight=3), sink, outbox=outbox):
        await trio.sleep(60)
    assert sink.most_at_once == 1
    assert [id for _, ids in sink.batches for id in ids] == sorted(keys)


async def test_a_short_batch_starts_no_second_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), SlowSink()
    _enqueue(outbox, 5, keys=5)  # batch size 10: the first claim takes them all
    async with open_relay(make_config(claims_in_flight=2), sink, outbox=outbox):
        await trio.sleep(2)  # delivered at 1; the first poll comes at 5
    assert outbox.statistics().claims == 1
    assert sink.most_at_once == 1


async def test_an_unavailable_sink_puts_its_batch_back_after_the_other_batch_settles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), SlowSink(unavailable_once=True)
    keys = _enqueue(outbox, 40, keys=40)
    async with open_relay(make_config(claims_in_flight=2), sink, outbox=outbox) as handle:
        await trio.sleep(60)
        assert handle.statistics().dead == handle.statistics().retried == 0
    assert outbox.pending() == []
    delivered = [id for _, ids in sink.batches for id in ids]
    assert set(delivered) == set(keys)
    # The unavailable batch came again; the other one, in the sink meanwhile, settled once.
    assert len(delivered) == len(keys) + 10


async def test_a_lost_database_is_waited_out_with_a_batch_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, sink = MemoryOutbox(), SlowSink()
    keys = _enqueue(outbox, 60, keys=60)
    outbox.fail_next_claim(1)  # the catch-up claim
    async with open_relay(make_config(claims_in_flight=2), sink, outbox=outbox):
        await trio.sleep(1)
        outbox.fail_next_claim(1, OutboxUnreachable("server closed the connection"))
        await trio.sleep(60)
    assert sorted(id for _, ids in sink.batches for id in ids) == sorted(keys)
    assert outbox.pending() == []
