"""Routing by topic: NATS-style patterns, first match wins, one route down holds back only its
events (deterministic, on MockClock and the in-memory outbox)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio
import trio.testing

from relay import Backoff, Config, ConfigError, OutboxEvent, PartialDelivery, SinkUnavailable
from relay.outages import Outages
from relay.ports import Retry
from relay.runtime import open_relay
from relay.settlement import settle_plan
from relay.sinks.routes import TopicPattern, check_routes, parse_route
from relay.sinks.routing import Route, RoutingSink
from relay.testing import MemoryOutbox, RecordingSink

STEADY = Backoff(base=1.0, cap=1.0, jitter=0.0)


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("orders.>", "orders.eu.created", True),
        ("orders.>", "orders", False),
        ("*.created", "payments.created", True),
        ("*.created", "created", False),
        ("orders", "orders", True),
        ("orders", "orders2", False),
        (">", "", True),
        (">", "anything.at.all", True),
        ("a.*.c", "a..c", True),  # an empty token is still a token
    ],
)
def test_patterns_match_whole_tokens(pattern: str, topic: str, matches: bool) -> None:
    assert TopicPattern.parse(pattern).matches(topic) is matches


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty topic pattern"),
        ("orders..x", "empty token"),
        (".orders", "empty token"),
        ("orders.", "empty token"),
        ("ord*", "whole token"),
        ("orders.>x", "whole token"),
        (">.orders", "must be the last token"),
        ("orders x", "space"),
        ("orders\x00", "control character"),
        ("orders.\udcff", "non-UTF-8"),
        ("orders.\u2028", "control character"),
        ("o" * 300, "over 255"),
    ],
)
def test_a_bad_pattern_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        TopicPattern.parse(text)
    assert caught.value.field == "route"
    assert len(str(caught.value)) < 200  # one line, a huge pattern cut


def test_a_route_splits_at_the_first_equals_sign() -> None:
    spec = parse_route("orders.*=http://127.0.0.1:9/hook?a=b")
    assert (spec.pattern.text, spec.url) == ("orders.*", "http://127.0.0.1:9/hook?a=b")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nats://user:hunter2@127.0.0.1", "expected PATTERN=URL"),
        ("orders.*", "expected PATTERN=URL"),
        ("orders.*=", "no sink URL"),
        ("=nats://user:hunter2@127.0.0.1", "empty topic pattern"),
        ("orders *=nats://user:hunter2@127.0.0.1", "space"),
    ],
)
def test_a_bad_route_is_refused_without_its_password(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        parse_route(text)
    assert "hunter2" not in str(caught.value)


def specs(*texts: str) -> list[object]:
    return [parse_route(text) for text in texts]


def test_routes_need_a_catch_all() -> None:
    with pytest.raises(ConfigError, match="no catch-all"):
        check_routes([parse_route("orders.*=stdout")], catch_all=None)
    check_routes([parse_route("orders.*=stdout")], catch_all="stdout")
    check_routes([parse_route("orders.*=stdout"), parse_route(">=stdout")], catch_all=None)


def test_a_pattern_twice_a_route_after_the_catch_all_and_two_catch_alls_are_refused() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        check_routes(
            [parse_route("a=stdout"), parse_route("a=stdout"), parse_route(">=stdout")],
            catch_all=None,
        )
    with pytest.raises(ConfigError, match="must come last"):
        check_routes([parse_route(">=stdout"), parse_route("a=stdout")], catch_all=None)
    with pytest.raises(ConfigError, match="two catch-alls"):
        check_routes([parse_route(">=stdout")], catch_all="stdout")


def ev(id: int, topic: str, key: str | None = None) -> OutboxEvent:
    return OutboxEvent.create(id, topic, {"n": id}, key=key)


async def test_each_event_goes_to_the_first_route_that_matches() -> None:
    orders, eu, rest = RecordingSink(), RecordingSink(), RecordingSink()
    sink = RoutingSink(
        [
            Route.create("orders.eu.*", eu),
            Route.create("orders.>", orders),
            Route.create(">", rest),
        ]
    )
    async with sink:
        await sink.deliver([ev(1, "orders.eu.new"), ev(2, "orders.us.new"), ev(3, "users")])
    assert (eu.ids, orders.ids, rest.ids) == ([1], [2], [3])
    assert [(r.pattern, r.delivered) for r in sink.statistics()] == [
        ("orders.eu.*", 1),
        ("orders.>", 1),
        (">", 1),
    ]


async def test_an_event_no_route_matches_fails_permanently() -> None:
    sink = RoutingSink([Route.create("orders.*", RecordingSink())])
    with pytest.raises(PartialDelivery) as caught:
        await sink.deliver([ev(1, "users")])
    assert caught.value.failures == {1: "no route matches topic 'users'"}
    assert caught.value.permanent == {1}
    assert sink.unrouted == 1


@attrs.define(eq=False)
class SwitchableSink:
    """Raises `SinkUnavailable` while `down`, else records; counts enters and exits."""

    down: bool = False
    delivered: list[int] = attrs.field(factory=list)
    tries: int = 0
    entered: int = 0
    exited: int = 0

    async def __aenter__(self) -> SwitchableSink:
        if self.entered != self.exited:
            raise RuntimeError("entered twice at once")
        await trio.lowlevel.checkpoint()
        self.entered += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.exited += 1

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        if self.entered == self.exited:
            raise RuntimeError("not entered")
        self.tries += 1
        await trio.sleep(0.1)
        if self.down:
            raise SinkUnavailable("broker at 127.0.0.1:1 refused the connection")
        self.delivered += [event.id for event in events]


async def test_a_route_down_defers_its_events_untried_until_its_next_try(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broken, fine = SwitchableSink(down=True), RecordingSink()
    outages = Outages()
    sink = RoutingSink(
        [Route.create("a", broken), Route.create(">", fine)],
        outage_backoff=STEADY,
        outages=outages,
    )
    async with sink:
        with pytest.raises(PartialDelivery) as caught:
            await sink.deliver([ev(1, "a", "k"), ev(2, "b", "j"), ev(3, "a", "k")])
        assert outages.current()["route a"].what == "route 'a' (SwitchableSink)"
        assert caught.value.unavailable == {1: 1.0, 3: 1.0}
        assert caught.value.failures[1].startswith("route 'a' unavailable: broker at")
        assert fine.ids == [2]
        assert (broken.entered, broken.exited) == (1, 0)  # left and entered at the next try
        await trio.sleep(0.25)
        with pytest.raises(PartialDelivery) as caught:
            await sink.deliver([ev(4, "a")])
        assert caught.value.unavailable == {4: pytest.approx(0.75)}  # untried: the route waits
        assert broken.tries == 1
        await trio.sleep(1)
        broken.down = False
        await sink.deliver([ev(5, "a")])
        assert outages.current() == {}  # ready again
    assert broken.delivered == [5]
    assert (broken.entered, broken.exited) == (2, 2)  # reconnected once, left at the end
    (a, rest) = sink.statistics()
    assert (a.up, a.deferred, a.delivered, a.tries) == (True, 3, 1, 0)
    assert rest.delivered == 1


def test_a_deferred_event_holds_its_key_and_counts_no_attempt() -> None:
    events = [ev(1, "a", "k"), ev(2, "a", "k"), ev(3, "b", "j")]
    import random

    outcome = settle_plan(
        events,
        {1: "route down", 3: "HTTP 500"},
        config=Config(),
        rng=random.Random(0),
        unavailable={1: 2.5},
    )
    assert dict(outcome.defer) == {1: outcome.defer[1]}
    assert (outcome.defer[1].delay, outcome.defer[1].reason) == (2.5, "route down")
    assert outcome.hold == {2}
    assert set(outcome.retry) == {3}


def test_unavailable_ids_must_be_failures_and_not_permanent() -> None:
    with pytest.raises(ValueError, match="unavailable ids not among the failures"):
        PartialDelivery({1: "x"}, unavailable={2: 1.0})
    with pytest.raises(ValueError, match="both permanent and unavailable"):
        PartialDelivery({1: "x"}, permanent=[1], unavailable={1: 1.0})


async def test_through_the_relay_a_route_down_holds_back_only_its_events_in_key_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    broken, fine = SwitchableSink(down=True), RecordingSink()
    sink = RoutingSink([Route.create("a", broken), Route.create(">", fine)], outage_backoff=STEADY)
    for n in range(3):
        outbox.enqueue("a", n, key="k")
        outbox.enqueue("b", n, key="j")
    config = Config(max_attempts=2, poll_interval=0.5)
    async with open_relay(config, sink, outbox=outbox) as handle:
        await fine.wait_for(3)
        await trio.sleep(0.5)
        assert [event.attempts for event in outbox.pending()] == [0, 0, 0]
        outbox.enqueue("a", 3, key="k")  # written while the route is down: must wait its turn
        await trio.sleep(3)
        assert broken.delivered == []
        broken.down = False
        await trio.sleep(2)  # the next try (1s backoff), then the deferred events come due
        stats = handle.statistics()
    assert broken.delivered == [1, 3, 5, 7]  # key k's order within the route
    assert fine.ids == [2, 4, 6]
    assert (stats.retried, stats.dead) == (0, 0)
    assert stats.deferred >= 3
    assert outbox.pending() == []


async def test_a_deferred_event_holds_later_events_of_its_key_in_the_outbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Whoever claims next (another relay whose route is up, say) must not overtake it."""
    outbox = MemoryOutbox()
    first = outbox.enqueue("a", 1, key="k")
    async with outbox.claim(10) as batch:
        await batch.settle(retry={}, bury={}, defer={first: Retry(5.0, "route 'a' unavailable")})
    second = outbox.enqueue("a", 2, key="k")
    other = outbox.enqueue("a", 3, key="j")
    async with outbox.claim(10) as batch:
        assert [event.id for event in batch.events] == [other]
        assert batch.next_due == 5.0
        await batch.settle(retry={}, bury={})
    await trio.sleep(5)
    async with outbox.claim(10) as batch:
        assert [(event.id, event.attempts) for event in batch.events] == [(first, 0), (second, 0)]


async def test_batches_delivered_at_once_share_one_reconnect_and_one_try_per_outage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The drainer may deliver two batches at once: they must not enter the sink twice, nor
    leave it under each other, nor count the outage twice."""
    broken = SwitchableSink(down=True)
    sink = RoutingSink([Route.create(">", broken)], outage_backoff=STEADY)

    async def deliver(*events: OutboxEvent) -> PartialDelivery | None:
        try:
            await sink.deliver(events)
        except PartialDelivery as partial:
            return partial
        return None

    outcomes: list[PartialDelivery | None] = []

    async def lane(*events: OutboxEvent) -> None:
        outcomes.append(await deliver(*events))

    async with sink:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane, ev(1, "a", "k"))
            nursery.start_soon(lane, ev(2, "a", "j"))
        assert sorted(id for o in outcomes if o is not None for id in o.unavailable) == [1, 2]
        (route,) = sink.statistics()
        assert (route.tries, route.deferred) == (1, 2)
        await trio.sleep(1)
        broken.down = False
        outcomes.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lane, ev(1, "a", "k"))
            nursery.start_soon(lane, ev(2, "a", "j"))
        assert outcomes == [None, None]
    assert sorted(broken.delivered) == [1, 2]
    assert (broken.entered, broken.exited) == (2, 2)
