"""`RoutingSink`: one `Sink` in front of several, each taking the topics its pattern matches.

Each batch is split by route (`relay.sinks.routes`: first match wins) and the parts are
delivered at once, each to its own sink; the outcomes merge into one `PartialDelivery`. A route's
sink keeps key order within its part. A key's events in a batch go to the route of its first
one: an event of it that another route takes is held, unsent, with the later ones of its key, and
claimed again at once (`PartialDelivery`'s `held`). So no event is sent while an earlier one of
its key is in flight, failing or deferred elsewhere, and nothing is sent twice for it.

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
from ..ports import OutboxEvent
from ..reasons import describe_error
from .lifetime import NetworkSink
from .route_state import Route, RouteState, RouteStatistics
from .routes import check_unique, first_match

__all__ = ["Route", "RouteStatistics", "RoutingSink"]

logger = logging.getLogger(__name__)

# Topics remembered with their route: a lookup per event instead of a match per route.
_REMEMBERED_TOPICS = 10_000


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
    _states: list[RouteState] = attrs.field(init=False)
    _by_topic: dict[str, int | None] = attrs.field(factory=dict, init=False)
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, init=False)
    _unrouted: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        check_unique(route.pattern for route in self.routes)
        self._states = [
            RouteState(route, RouteStatistics(route.pattern.text, route.destination))
            for route in self.routes
        ]

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            if any(isinstance(route.sink, NetworkSink) for route in self.routes):
                # One asyncio loop for every route's sink (the caller's, under `run_relay`), so
                # that each may be left and entered again in any order.
                await stack.enter_async_context(asyncio_loop())
            stack.push_async_callback(self._leave_all)
            errors: list[Exception] = []

            async def enter(state: RouteState) -> None:
                try:
                    await self._enter(state, reserve=False)
                except Exception as exc:  # raised bare below, not in the nursery's group
                    errors.append(exc)

            async with trio.open_nursery() as nursery:
                for state in self._states:  # at once: a route slow to connect delays none
                    nursery.start_soon(enter, state)
            if errors:
                raise errors[0]
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _leave_all(self) -> None:
        for state in reversed(self._states):
            await state.leave()

    async def _enter(self, state: RouteState, *, reserve: bool) -> bool:
        """Enter the route's sink if it is not; False (and the route down) if unavailable."""
        try:
            await state.enter(reserve=reserve)
        except SinkUnavailable as exc:
            if isinstance(exc, NotRestartable):
                raise
            self._went_down(state, exc)
            return False
        return True

    def _route_index(self, topic: str) -> int | None:
        try:
            return self._by_topic[topic]
        except KeyError:
            pass
        index = first_match([route.pattern for route in self.routes], topic)
        if len(self._by_topic) >= _REMEMBERED_TOPICS:
            self._by_topic.clear()
        self._by_topic[topic] = index
        return index

    def _split(self, events: Sequence[OutboxEvent]) -> _Split:
        """Each route's part of `events`, in order; the unrouted failed; and held, unsent, each
        event whose key has an earlier event this batch that went to another route or nowhere."""
        split = _Split()
        route_of_key: dict[str, int] = {}
        stopped: set[str] = set()  # keys with an event not sent: their later events wait too
        for event in events:
            key = event.key
            if key is not None and key in stopped:
                split.held.add(event.id)
                continue
            index = self._route_index(event.topic)
            if index is None:
                split.failures[event.id] = f"no route matches topic {event.topic[:100]!r}"
                split.permanent.add(event.id)
                self._unrouted += 1
            elif key is None or route_of_key.setdefault(key, index) == index:
                split.parts.setdefault(index, []).append(event)
                continue
            else:
                split.held.add(event.id)
            if key is not None:
                stopped.add(key)
        return split

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Deliver each route's part of `events` through its sink, the parts at once.

        A key's events in the batch go to the route of its first one: an event of the key that
        another route takes is held, not sent (`PartialDelivery`'s `held`), with every later
        event of its key, and is claimed again at once, after its key's earlier events settled.

        Raises:
            PartialDelivery: some events failed (retried or buried by the drainer), their
                route is down (`unavailable`: put back untouched until its next try) or they were
                held (`held`: put back untouched, claimed again at once).
            NotRestartable: a route's output is closed for good; the relay stops.
        """
        split = self._split(events)
        failures, permanent, held = split.failures, split.permanent, split.held
        tries = [_Try(self._states[index], part) for index, part in split.parts.items()]
        async with trio.open_nursery() as nursery:
            for attempt in tries:  # each route entered in its own task: a slow one delays none
                nursery.start_soon(self._try, attempt)
        for attempt in tries:
            if isinstance(attempt.outcome, NotRestartable):
                raise attempt.outcome
        deferred_parts: list[tuple[RouteState, list[OutboxEvent]]] = []
        for attempt in tries:
            state, part, outcome = attempt.state, attempt.part, attempt.outcome
            if not attempt.entered:
                if outcome is None:  # down: not tried
                    deferred_parts.append((state, part))
                else:  # entering it failed, not for an outage: the part failed
                    self._settle_part(state, part, outcome, split)
                continue
            went_down_meanwhile = state.outages != attempt.outages
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
                deferred_parts.append((state, part))
                continue
            if not went_down_meanwhile:
                self._recovered(state)
            self._settle_part(state, part, outcome, split)
        unavailable: dict[int, float] = {}
        now = trio.current_time()
        for state, part in deferred_parts:
            delay = max(0.0, state.next_try_at - now)
            reason = f"route {state.route.pattern.text!r} unavailable: {state.stats.reason}"
            for event in part:
                failures[event.id] = reason
                unavailable[event.id] = delay
            self._count(state, deferred=len(part))
        if failures or held:
            raise PartialDelivery(failures, permanent=permanent, unavailable=unavailable, held=held)

    async def _try(self, attempt: _Try) -> None:
        """Enter the route's sink unless the route is down, and deliver its part; the outcome is
        kept in `attempt`, out of the nursery: one route's error is its own."""
        state = attempt.state
        if state.next_try_at > trio.current_time():
            return
        try:
            if not await self._enter(state, reserve=True):
                return
        except Exception as exc:  # NotRestartable included: raised once every part is done
            attempt.outcome = exc
            return
        attempt.entered = True
        attempt.outages = state.outages
        try:
            await state.route.sink.deliver(attempt.part)
        except Exception as exc:
            attempt.outcome = exc
        finally:
            state.in_flight -= 1

    def _settle_part(
        self,
        state: RouteState,
        part: list[OutboxEvent],
        outcome: BaseException | None,
        split: _Split,
    ) -> None:
        if outcome is None:
            self._count(state, delivered=len(part))
            return
        failures = split.failures
        if isinstance(outcome, PartialDelivery):
            ids = {event.id for event in part}
            failed = {id: reason for id, reason in outcome.failures.items() if id in ids}
            # A nested routing sink's unavailable events fail here: rare, and retried.
            failures.update(failed)
            split.permanent.update(outcome.permanent & failed.keys())
            nested_held = outcome.held & ids
            split.held.update(nested_held)
            delivered = len(part) - len(failed) - len(nested_held)
            self._count(state, delivered=delivered, failed=len(failed))
            return
        logger.warning(
            "route %r failed a batch of %d events",
            state.route.pattern.text,
            len(part),
            exc_info=outcome,
        )
        failures.update(dict.fromkeys((event.id for event in part), describe_error(outcome)))
        self._count(state, failed=len(part))

    def _went_down(self, state: RouteState, error: BaseException) -> None:
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

    def _recovered(self, state: RouteState) -> None:
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

    def _count(self, state: RouteState, **counts: int) -> None:
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


@attrs.define(eq=False)
class _Split:
    """A batch split by route: each route's part (by index), and what is settled already."""

    parts: dict[int, list[OutboxEvent]] = attrs.field(factory=dict)
    failures: dict[int, str] = attrs.field(factory=dict)
    permanent: set[int] = attrs.field(factory=set)
    held: set[int] = attrs.field(factory=set)


@attrs.define(eq=False)
class _Try:
    """One route's part of a delivery, and how it went."""

    state: RouteState
    part: list[OutboxEvent]
    entered: bool = False  # False: the route was down (outcome None) or entering it raised
    outages: int = 0  # the route's outages when entered: a change meanwhile is an outage met
    outcome: BaseException | None = None


def _who(state: RouteState) -> str:
    return f"route {state.route.pattern.text}"
