"""`deliver_in_lanes`: an exception for one event is that event's failure, never its neighbours'."""

from __future__ import annotations

import pytest
import trio

from relay import OutboxEvent, PartialDelivery, SinkUnavailable
from relay.sinks.lanes import Failure, deliver_in_lanes


def ev(id: int, key: str | None) -> OutboxEvent:
    return OutboxEvent(id=id, topic="t", key=key, payload_json=b"{}")


async def test_an_exception_sending_one_event_fails_it_and_holds_only_its_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sent: list[int] = []

    async def send(event: OutboxEvent) -> Failure | None:
        await trio.sleep(event.id)  # the neighbours are still in flight when event 1 raises
        if event.id == 1:
            raise TypeError("not a JSON object")
        sent.append(event.id)
        return None

    events = [ev(1, "a"), ev(2, "a"), ev(3, "b"), ev(4, None), ev(5, "c")]
    with pytest.raises(PartialDelivery) as caught:
        await deliver_in_lanes(events, send, trio.CapacityLimiter(10))
    assert caught.value.failures == {1: "TypeError: not a JSON object", 2: "held behind event 1"}
    assert caught.value.permanent == frozenset()
    assert sorted(sent) == [3, 4, 5]


async def test_sink_unavailable_from_one_event_stops_every_lane_and_is_raised_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def send(event: OutboxEvent) -> Failure | None:
        if event.id == 1:
            raise SinkUnavailable("no stream")
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(SinkUnavailable, match="no stream"):
        await deliver_in_lanes([ev(1, "a"), ev(2, "b")], send, trio.CapacityLimiter(10))
