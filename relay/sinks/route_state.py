"""A route of a `RoutingSink`: its pattern and sink (`Route`), what it has done
(`RouteStatistics`), and, while the routing sink is entered, its sink's lifetime (`RouteState`)."""

from __future__ import annotations

import contextlib

import attrs
import trio

from ..ports import Sink
from ..secrets import url_origin
from .routes import TopicPattern


@attrs.frozen
class Route:
    """A topic pattern and the sink its events go to.

    Attributes:
        pattern: which topics (first match wins among the routes).
        sink: where they go; entered by the routing sink when it is a context manager.
        destination: the sink's `scheme://host[:port]` (`url_origin`), for logs, metrics and
            status: never its path or query, which may hold a secret.
    """

    pattern: TopicPattern
    sink: Sink
    destination: str = attrs.field(converter=url_origin)

    @classmethod
    def create(cls, pattern: str, sink: Sink, url: str = "") -> Route:
        """A route from a pattern's text (checked), a sink and the URL it was opened from."""
        return cls(TopicPattern.parse(pattern), sink, url or type(sink).__name__)


@attrs.frozen
class RouteStatistics:
    """What one route has done, and whether it is down now.

    Attributes:
        pattern: the route's pattern, its name.
        destination: its sink's `scheme://host[:port]`.
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
class RouteState:
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
