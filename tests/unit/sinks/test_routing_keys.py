"""Routing keeps each key whole: a key's later event never goes out on another route while an
earlier one is undelivered, nor twice; and one slow route delays no other (MockClock, the
in-memory outbox)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio
import trio.testing

from relay import Backoff, Config, OutboxEvent, PartialDelivery, SinkUnavailable
from relay.runtime import open_relay
from relay.settlement import settle_plan
from relay.sinks.routing import Route, RoutingSink
from relay.testing import MemoryOutbox, RecordingSink

STEADY = Backoff(base=1.0, cap=1.0, jitter=0.0)


def ev(id: int, topic: str, key: str | None = None) -> OutboxEvent:
    return OutboxEvent.create(id, topic, {"n": id}, key=key)


@attrs.define(eq=False)
class FlakySink:
    """Raises `SinkUnavailable` while `down`, `RuntimeError` while `failing`, else records."""

    down: bool = False
    failing: bool = False
    delivered: list[int] = attrs.field(factory=list)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        await trio.sleep(0.01)
        if self.down:
            raise SinkUnavailable("broker at 127.0.0.1:1 refused the connection")
        if self.failing:
            raise RuntimeError("HTTP 500")
        self.delivered += [event.id for event in events]


async def test_a_later_event_of_a_key_on_another_route_is_held_unsent() -> None:
    a, b = RecordingSink(), RecordingSink()
    sink = RoutingSink([Route.create("a", a), Route.create(">", b)])
    async with sink:
        with pytest.raises(PartialDelivery) as caught:
            await sink.deliver([ev(1, "a", "k"), ev(2, "b", "k"), ev(3, "a", "k"), ev(4, "b", "j")])
    assert (a.ids, b.ids) == ([1], [4])
    assert caught.value.failures == {}
    assert caught.value.held == {2, 3}  # 3 too: after 2, which waits, whatever its route
    assert [(r.delivered, r.failed, r.deferred) for r in sink.statistics()] == [(1, 0, 0)] * 2


async def test_an_event_after_an_unrouted_one_of_its_key_is_held() -> None:
    sink = RoutingSink([Route.create("a", RecordingSink())])
    with pytest.raises(PartialDelivery) as caught:
        await sink.deliver([ev(1, "users", "k"), ev(2, "a", "k")])
    assert caught.value.permanent == {1}
    assert caught.value.held == {2}


def test_a_held_event_is_held_with_its_key_and_counts_no_attempt() -> None:
    import random

    events = [ev(1, "a", "k"), ev(2, "b", "k"), ev(3, "a", "k"), ev(4, "b", "j")]
    outcome = settle_plan(events, {}, config=Config(), rng=random.Random(0), held={2})
    assert (outcome.hold, dict(outcome.retry), dict(outcome.defer)) == ({2, 3}, {}, {})


def test_held_ids_must_not_be_failures() -> None:
    with pytest.raises(ValueError, match="both held and failed"):
        PartialDelivery({1: "x"}, held=[1])


@pytest.mark.parametrize("trouble", ["down", "failing"])
async def test_a_key_across_routes_is_delivered_once_in_order_through_the_relay(
    autojump_clock: trio.testing.MockClock, trouble: str
) -> None:
    """Before: event 2 went out on route b on every retry of event 1 on route a (9 copies)."""
    outbox = MemoryOutbox()
    troubled, fine = FlakySink(**{trouble: True}), RecordingSink()
    sink = RoutingSink(
        [Route.create("a", troubled), Route.create(">", fine)], outage_backoff=STEADY
    )
    outbox.enqueue("a", 1, key="k")
    outbox.enqueue("b", 2, key="k")
    outbox.enqueue("b", 3, key="j")
    config = Config(max_attempts=100, poll_interval=0.5, retry_backoff=STEADY)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await trio.sleep(30)
        assert fine.ids == [3]  # not 2: its key's first event is not delivered
        setattr(troubled, trouble, False)
        await trio.sleep(5)
        stats = handle.statistics()
    assert troubled.delivered == [1]
    assert fine.ids == [3, 2]
    assert stats.dead == 0
    assert outbox.pending() == []


async def test_held_events_are_claimed_again_at_once_not_at_the_next_poll(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    a, b = RecordingSink(), RecordingSink()
    sink = RoutingSink([Route.create("a", a), Route.create(">", b)])
    for n, topic in enumerate(["a", "b", "a", "b"]):
        outbox.enqueue(topic, n, key="k")
    async with open_relay(Config(poll_interval=60), sink, outbox=outbox) as handle:
        with trio.fail_after(1):
            await b.wait_for(2)
            await a.wait_for(2)
        stats = handle.statistics()
    assert (a.ids, b.ids) == ([1, 3], [2, 4])
    assert (stats.retried, stats.deferred) == (0, 0)
    assert [e.attempts for e in a.events + b.events] == [0, 0, 0, 0]


@attrs.define(eq=False)
class SlowToConnectSink:
    """Unavailable at first; then takes 10 s to enter (and fails): a route hard to reach."""

    entered: int = 0

    async def __aenter__(self) -> SlowToConnectSink:
        self.entered += 1
        if self.entered > 1:
            await trio.sleep(10)
        raise SinkUnavailable("connect to 127.0.0.1:1 timed out")

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        raise AssertionError("never entered")


async def test_a_route_slow_to_connect_delays_no_other_route(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow, fine = SlowToConnectSink(), RecordingSink()
    sink = RoutingSink([Route.create("a", slow), Route.create(">", fine)], outage_backoff=STEADY)
    async with sink, trio.open_nursery() as nursery:
        await trio.sleep(1)  # the slow route's next try is due
        started = trio.current_time()

        async def deliver() -> None:
            with pytest.raises(PartialDelivery):
                await sink.deliver([ev(1, "a"), ev(2, "b")])

        nursery.start_soon(deliver)
        await fine.wait_for(1)
        assert trio.current_time() - started < 1  # not after the 10 s connect
    assert slow.entered == 2


async def test_a_route_shows_as_pattern_and_origin_in_readiness_logs_and_metrics(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    from relay.daemon.route_metrics import RouteCollector
    from relay.outages import Outages

    url = "nats://relay:hunter2@127.0.0.1:1/T0K3N?sig=S1GN4TURE&key=K3YK3Y"
    outages = Outages()
    sink = RoutingSink(
        [Route.create("a", FlakySink(down=True), url), Route.create(">", RecordingSink())],
        outage_backoff=STEADY,
        outages=outages,
    )
    async with sink:
        with pytest.raises(PartialDelivery):
            await sink.deliver([ev(1, "a"), ev(2, "users")])
        what = outages.current()["route a"].what
    sink = RoutingSink([Route.create("a", RecordingSink(), url)])
    with pytest.raises(PartialDelivery):
        await sink.deliver([ev(3, "users")])
    metrics = {m.name: m.samples for m in RouteCollector(sink).collect()}
    assert what == "route 'a' (nats://127.0.0.1:1)"
    assert metrics["relay_route_delivered"][0].labels == {
        "route": "a",
        "destination": "nats://127.0.0.1:1",
    }
    assert metrics["relay_route_unrouted"][0].value == 1
    shown = caplog.text + what + repr(metrics)
    for secret in ("hunter2", "T0K3N", "S1GN4TURE", "K3YK3Y"):
        assert secret not in shown


@attrs.define(eq=False)
class SlowToEnterSink(RecordingSink):
    """Takes 10 s to connect."""

    async def __aenter__(self) -> SlowToEnterSink:
        await trio.sleep(10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


async def test_routes_are_entered_at_once_at_the_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RoutingSink([Route.create("a", SlowToEnterSink()), Route.create(">", SlowToEnterSink())])
    async with sink:
        assert trio.current_time() == pytest.approx(10)  # not 20


async def test_a_nested_routing_sinks_held_events_stay_held() -> None:
    a, b = RecordingSink(), RecordingSink()
    inner = RoutingSink([Route.create("orders.a", a), Route.create(">", b)])
    outer = RoutingSink([Route.create("orders.>", inner), Route.create(">", RecordingSink())])
    with pytest.raises(PartialDelivery) as caught:
        await outer.deliver([ev(1, "orders.a", "k"), ev(2, "orders.b", "k")])
    assert (a.ids, b.ids, caught.value.held) == ([1], [], {2})
    assert [(r.delivered, r.failed) for r in outer.statistics()] == [(1, 0), (0, 0)]
