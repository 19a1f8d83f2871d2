"""`deliver_pipelined`: one crossing per batch, each key in order, a failure holds only its key."""

from __future__ import annotations

import asyncio

import pytest

from relay import OutboxEvent, PartialDelivery, SinkUnavailable
from relay.aio_thread import open_loop_thread
from relay.sinks.lanes import Failure
from relay.sinks.pipeline import Pipeline, deliver_pipelined


class Lost(Exception):
    pass


def ev(id: int, key: str | None) -> OutboxEvent:
    return OutboxEvent(id=id, topic="t", key=key, payload_json=b"{}")


def pipeline(sent: list[int], fail: dict[int, Exception], window: int = 10) -> Pipeline[int]:
    def prepare(event: OutboxEvent) -> int | Failure:
        if event.id == 99:
            return Failure("unroutable", permanent=True)
        if event.id == 98:
            raise TypeError("a bug")
        return event.id

    async def publish(id: int) -> None:
        await asyncio.sleep(0.001 * (10 - id % 10))  # acks out of order across keys
        if id in fail:
            raise fail[id]
        sent.append(id)

    def judge(event: OutboxEvent, exc: BaseException) -> Failure | SinkUnavailable:
        if isinstance(exc, Lost):
            return SinkUnavailable("lost")
        return Failure(f"refused: {exc}")

    return Pipeline(prepare, publish, judge, (Lost,), window, timeout=5.0)


async def test_every_key_goes_in_order_the_keys_side_by_side() -> None:
    sent: list[int] = []
    events = [ev(1, "a"), ev(2, "b"), ev(3, "a"), ev(4, None), ev(5, "b"), ev(6, "a")]
    async with open_loop_thread() as aio:
        await deliver_pipelined(events, pipeline(sent, {}, window=2), aio)
    assert sorted(sent) == [1, 2, 3, 4, 5, 6]
    for key in ("a", "b"):
        ids = [e.id for e in events if e.key == key]
        assert [i for i in sent if i in ids] == ids


async def test_a_failure_holds_the_rest_of_its_key_unsent_and_nothing_else() -> None:
    sent: list[int] = []
    events = [ev(1, "a"), ev(2, "a"), ev(3, "a"), ev(4, "b"), ev(99, "c"), ev(5, "c"), ev(98, "d")]
    async with open_loop_thread() as aio:
        with pytest.raises(PartialDelivery) as caught:
            await deliver_pipelined(events, pipeline(sent, {2: ValueError("full")}), aio)
    assert caught.value.failures == {
        2: "refused: full",
        3: "held behind event 2",
        99: "unroutable",
        5: "held behind event 99",
        98: "TypeError: a bug",
    }
    assert caught.value.permanent == {99}
    assert sorted(sent) == [1, 4]


async def test_a_fatal_error_stops_every_lane_and_is_sink_unavailable() -> None:
    sent: list[int] = []
    events = [ev(id, "a") for id in range(1, 6)] + [ev(id, "b") for id in range(6, 9)]
    async with open_loop_thread() as aio:
        with pytest.raises(SinkUnavailable, match="lost"):
            await deliver_pipelined(events, pipeline(sent, {2: Lost()}), aio)
    assert 3 not in sent


async def test_an_event_unacknowledged_at_the_batch_deadline_fails_and_holds_its_key() -> None:
    sent: list[int] = []
    events = [ev(1, "a"), ev(2, "a"), ev(3, "b")]
    hang = pipeline(sent, {})

    async def publish(id: int) -> None:
        if id == 1:
            await asyncio.sleep(3600)
        sent.append(id)

    hung = Pipeline(hang.prepare, publish, hang.judge, hang.fatal, 10, timeout=0.2)
    async with open_loop_thread() as aio:
        with pytest.raises(PartialDelivery) as caught:
            await deliver_pipelined(events, hung, aio)
    assert caught.value.failures == {
        1: "refused: no acknowledgement within 0.2s",
        2: "held behind event 1",
    }
    assert sent == [3]


async def test_at_most_window_publishes_await_their_ack_at_once_and_every_lane_is_served() -> None:
    in_flight = 0
    most = 0
    sent: list[int] = []

    async def publish(id: int) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        sent.append(id)

    base = pipeline([], {})
    windowed = Pipeline(base.prepare, publish, base.judge, base.fatal, 3, timeout=5.0)
    events = [ev(id, f"k{id % 7}" if id % 5 else None) for id in range(1, 61)]
    async with open_loop_thread() as aio:
        await deliver_pipelined(events, windowed, aio)
    assert most == 3
    assert sorted(sent) == list(range(1, 61))
    for key in {e.key for e in events if e.key is not None}:
        ids = [e.id for e in events if e.key == key]
        assert [i for i in sent if i in ids] == ids
