"""`RoutingSink`: one `Sink` in front of several, each taking the topics its pattern matches.

Each batch is split by route (`relay.sinks.routes`: first match wins) and the parts are
delivered at once, each to its own sink; the outcomes merge into one `PartialDelivery`. A route's
sink keeps key order within its part, and a key's events all go to one route when they share a
topic, so each key's order holds within its route.

A route whose destination is unavailable (its sink raised `SinkUnavailable`, entering or
delivering) is down: its sink is left (entering it again reconnects), and its events are put
back untouched, no attempt counted, not before the route's next try (`PartialDelivery`'s
`unavailable`), with capped exponential backoff between tries (`Config.outage_backoff`). The
other routes keep delivering meanwhile. Until its next try a down route is not tried at all: the
events of it claimed meanwhile are deferred at once to that time.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Self

import attrs
import trio

from ..aio import asyncio_loop
from ..backoff import Backoff
from ..errors import NotRestartable, PartialDelivery, SinkUnavailable
from ..outages import Outages
from ..ports import OutboxEvent, Sink
from ..reasons import describe_error
from ..secrets import mask_url
from .lifetime import NetworkSink
from .routes import TopicPattern

logger = logging.getLogger(__name__)

# Topics remembered with their route: a lookup per event instead of a match per route.
_REMEMBERED_TOPICS = 10_000


@attrs.frozen
class Route:
    """A topic pattern and the sink its events go to.

    Attributes:
        pattern: which topics (first match wins among the routes).
        sink: where they go; entered by the routing sink when it is a context manager.
        destination: the sink's URL with any password masked, for logs, metrics and status.
    """

    pattern: TopicPattern
    sink: Sink
    destination: str

    @classmethod
    def create(cls, pattern: str, sink: Sink, url: str = "") -> Route:
        """A route from a pattern's text (checked), a sink and the URL it was opened from."""
        return cls(TopicPattern.parse(pattern), sink, mask_url(url) if url else type(sink).__name__)


@attrs.frozen
class RouteStatistics:
    """What one route has done, and whether it is down now.

    Attributes:
        pattern: the route's pattern, its name.
        destination: its sink's URL, password masked.
        delivered: events its sink took.
        failed: events its sink failed (each then retried or buried by the drainer).
        deferred: events put back because the route was down.
        down_since: trio time of the first failed try of the outage going on, or None when up.
        tries: failed tries in the outage going on (0 when up).
        reason: the last failed try's error, one line, or None.
    """

    pattern: str
    destination: str
    delivered: int = 0
    failed: int = 0
    deferred: int = 0
    down_since: float | None = None
    tries: int = 0
    reason: str | None = None

    @property
    def up(self) -> bool:
        return self.down_since is None


@attrs.define(eq=False)
class _RouteState:
    """A route while the routing sink is entered: its sink's lifetime and its outage."""

    route: Route
    stats: RouteStatistics
    stack: contextlib.AsyncExitStack | None = None
    next_try_at: float = -float("inf")
    # The drainer may deliver several batches at once (`claims_in_flight`): the sink is entered
    # and left under a lock, and left to reconnect only while no delivery uses it.
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    in_flight: int = 0
    stale: bool = False  # found down: leave and enter again (reconnect) before the next delivery
    outages: int = 0  # times it went down: a delivery that saw it change met that outage

    async def enter(self, *, reserve: bool) -> None:
        """Enter the sink unless it is entered (first leaving it, to reconnect, when stale and
        idle); with `reserve`, count one delivery in flight."""
        async with self.lock:
            if self.stale and self.in_flight == 0:
                self.stale = False
                await self.leave()
            if self.stack is None:
                async with contextlib.AsyncExitStack() as stack:
                    if isinstance(self.route.sink, contextlib.AbstractAsyncContextManager):
                        await stack.enter_async_context(self.route.sink)
                    self.stack = stack.pop_all()
            if reserve:
                self.in_flight += 1

    async def leave(self) -> None:
        stack, self.stack = self.stack, None
        if stack is not None:
            await stack.aclose()


@attrs.define(eq=False)
class RoutingSink:
    """A `Sink` that sends each event to the first route whose pattern matches its topic.

    Give the catch-all as the last route, pattern `>`: an event no route takes is a bug of the
    caller's (`relay.sinks.routes.check_routes` refuses such routes), failed permanently.
    Enter it (`async with`) to enter every route's sink; a route whose sink is unavailable then
    starts down, and the others deliver.
    """

    routes: Sequence[Route]
    outage_backoff: Backoff = attrs.field(factory=lambda: Backoff(base=0.5, cap=30.0))
    rng: random.Random = attrs.field(factory=random.Random)
    # Where a route down is recorded for readiness (`relay run` gives the relay's), if anywhere.
    outages: Outages | None = None
    _states: list[_RouteState] = attrs.field(init=False)
    _by_topic: dict[str, _RouteState | None] = attrs.field(factory=dict, init=False)
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, init=False)
    _unrouted: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        patterns = [route.pattern.text for route in self.routes]
        if len(set(patterns)) != len(patterns):
            raise ValueError(f"a topic pattern is given twice: {patterns}")
        self._states = [
            _RouteState(route, RouteStatistics(route.pattern.text, route.destination))
            for route in self.routes
        ]

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            if any(isinstance(route.sink, NetworkSink) for route in self.routes):
                # One asyncio loop for every route's sink (the caller's, under `run_relay`), so
                # that each may be left and entered again in any order.
                await stack.enter_async_context(asyncio_loop())
            stack.push_async_callback(self._leave_all)
            for state in self._states:
                await self._enter(state, reserve=False)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _leave_all(self) -> None:
        for state in reversed(self._states):
            await state.leave()

    async def _enter(self, state: _RouteState, *, reserve: bool) -> bool:
        """Enter the route's sink if it is not; False (and the route down) if unavailable."""
        try:
            await state.enter(reserve=reserve)
        except SinkUnavailable as exc:
            if isinstance(exc, NotRestartable):
                raise
            self._went_down(state, exc)
            return False
        return True

    def route_of(self, topic: str) -> Route | None:
        """The route `topic` goes to, or None when none matches."""
        state = self._state_of(topic)
        return None if state is None else state.route

    def _state_of(self, topic: str) -> _RouteState | None:
        try:
            return self._by_topic[topic]
        except KeyError:
            pass
        state = next((s for s in self._states if s.route.pattern.matches(topic)), None)
        if len(self._by_topic) >= _REMEMBERED_TOPICS:
            self._by_topic.clear()
        self._by_topic[topic] = state
        return state

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Deliver each route's part of `events` through its sink, the parts at once.

        Raises:
            PartialDelivery: some events failed (retried or buried by the drainer) or their
                route is down (`unavailable`: put back untouched until its next try).
            NotRestartable: a route's output is closed for good; the relay stops.
        """
        parts: dict[int, list[OutboxEvent]] = {}
        failures: dict[int, str] = {}
        permanent: set[int] = set()
        for event in events:
            state = self._state_of(event.topic)
            if state is None:
                failures[event.id] = f"no route matches topic {event.topic[:100]!r}"
                permanent.add(event.id)
                self._unrouted += 1
                continue
            parts.setdefault(self._states.index(state), []).append(event)
        now = trio.current_time()
        # Each route ready to try, its part, and how many outages it had before this delivery.
        ready: list[tuple[_RouteState, list[OutboxEvent], int]] = []
        held: list[tuple[_RouteState, list[OutboxEvent]]] = []
        outcomes: list[BaseException | None] = []

        async def deliver_part(slot: int, state: _RouteState, part: list[OutboxEvent]) -> None:
            try:
                await state.route.sink.deliver(part)
            except Exception as exc:  # kept out of the nursery: one route's error is its own
                outcomes[slot] = exc

        try:
            for index, part in parts.items():
                state = self._states[index]
                if state.next_try_at > now or not await self._enter(state, reserve=True):
                    held.append((state, part))
                else:
                    ready.append((state, part, state.outages))
            outcomes = [None] * len(ready)
            async with trio.open_nursery() as nursery:
                for slot, (state, part, _) in enumerate(ready):
                    nursery.start_soon(deliver_part, slot, state, part)
        finally:
            for state, _, _ in ready:
                state.in_flight -= 1
        for (state, part, outages), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, NotRestartable):
                raise outcome
            went_down_meanwhile = state.outages != outages
            if isinstance(outcome, SinkUnavailable) or (
                # Another delivery found it down and it was left under this one: not the
                # events' fault either.
                went_down_meanwhile
                and outcome is not None
                and not isinstance(outcome, PartialDelivery)
            ):
                if not went_down_meanwhile:  # one try per outage met, however many batches met it
                    assert outcome is not None
                    self._went_down(state, outcome)
                state.stale = True  # left and entered again at the next try: that reconnects
                held.append((state, part))
                continue
            if not went_down_meanwhile:
                self._recovered(state)
            self._settle_part(state, part, outcome, failures, permanent)
        unavailable: dict[int, float] = {}
        now = trio.current_time()
        for state, part in held:
            delay = max(0.0, state.next_try_at - now)
            reason = f"route {state.route.pattern.text!r} unavailable: {state.stats.reason}"
            for event in part:
                failures[event.id] = reason
                unavailable[event.id] = delay
            self._count(state, deferred=len(part))
        if failures:
            raise PartialDelivery(failures, permanent=permanent, unavailable=unavailable)

    def _settle_part(
        self,
        state: _RouteState,
        part: list[OutboxEvent],
        outcome: BaseException | None,
        failures: dict[int, str],
        permanent: set[int],
    ) -> None:
        if outcome is None:
            self._count(state, delivered=len(part))
            return
        if isinstance(outcome, PartialDelivery):
            ids = {event.id for event in part}
            failed = {id: reason for id, reason in outcome.failures.items() if id in ids}
            # A nested routing sink's unavailable events fail here: rare, and retried.
            failures.update(failed)
            permanent.update(outcome.permanent & failed.keys())
        else:
            logger.warning(
                "route %r failed a batch of %d events",
                state.route.pattern.text,
                len(part),
                exc_info=outcome,
            )
            reason = describe_error(outcome)
            failed = {event.id: reason for event in part}
            failures.update(failed)
        self._count(state, delivered=len(part) - len(failed), failed=len(failed))

    def _went_down(self, state: _RouteState, error: BaseException) -> None:
        stats = state.stats
        now = trio.current_time()
        tries = stats.tries + 1
        state.outages += 1
        delay = self.outage_backoff.delay(tries - 1, self.rng)
        state.next_try_at = now + delay
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        state.stats = attrs.evolve(
            stats,
            down_since=now if stats.down_since is None else stats.down_since,
            tries=tries,
            reason=reason,
        )
        if self.outages is not None:
            self.outages.down(_who(state), f"route {stats.pattern!r} ({stats.destination})", reason)
        logger.warning(
            "route %r: sink %s unavailable (try %d): %s; its events wait %.3gs, the other routes"
            " go on",
            stats.pattern,
            stats.destination,
            tries,
            reason,
            delay,
        )

    def _recovered(self, state: _RouteState) -> None:
        stats = state.stats
        if stats.down_since is None:
            return
        logger.info(
            "route %r: sink %s reachable again after %d failed tries in %.3gs",
            stats.pattern,
            stats.destination,
            stats.tries,
            trio.current_time() - stats.down_since,
        )
        state.stats = attrs.evolve(stats, down_since=None, tries=0, reason=None)
        if self.outages is not None:
            self.outages.up(_who(state))

    def _count(self, state: _RouteState, **counts: int) -> None:
        stats = state.stats
        state.stats = attrs.evolve(
            stats, **{name: getattr(stats, name) + n for name, n in counts.items()}
        )

    def statistics(self) -> tuple[RouteStatistics, ...]:
        """Each route's statistics, in the routes' order."""
        return tuple(state.stats for state in self._states)

    @property
    def unrouted(self) -> int:
        """Events no route matched (failed permanently)."""
        return self._unrouted


def _who(state: _RouteState) -> str:
    return f"route {state.route.pattern.text}"
