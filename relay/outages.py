"""Outages: a database or broker that cannot be reached is waited for, never a crash.

An actor that meets an outage (`is_outage`) waits through a `Waiter`: capped exponential backoff
with jitter (`Config.outage_backoff`), one log line per try naming what, where and why, and the
outage recorded in `Outages` for readiness until the next success. The supervisor never sees it, so
the restart intensity counts only relay's own crashes.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

import attrs
import trio

from .backoff import Backoff
from .errors import OutboxUnreachable, SinkUnavailable, Unreachable

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_outage(error: BaseException) -> bool:
    """Whether `error` says a database or broker cannot be reached now (worth waiting for).

    Not an outage: any other `OutboxUnavailable`, such as a DSN the server refused for good, a
    missing schema or a statement the server rejected, which only an operator can fix.
    """
    return isinstance(error, OutboxUnreachable | SinkUnavailable)


@attrs.frozen
class Outage:
    """One thing relay is waiting for.

    Attributes:
        what: "database" or "sink".
        reason: the last try's error, one line (it names where).
        since: trio time of the first failed try.
        tries: failed tries so far.
    """

    what: str
    reason: str
    since: float
    tries: int


@attrs.define(eq=False)
class Outages:
    """The outages going on now, by who waits (an actor's name): readiness reads them."""

    _current: dict[str, Outage] = attrs.field(factory=dict)

    def down(self, who: str, what: str, reason: str) -> Outage:
        """Record a failed try of `who` to reach `what`."""
        before = self._current.get(who)
        outage = Outage(
            what,
            reason,
            before.since if before is not None else trio.current_time(),
            (before.tries if before is not None else 0) + 1,
        )
        self._current[who] = outage
        return outage

    def up(self, who: str) -> Outage | None:
        """`who` reached what it waited for; returns the outage that ended, if any."""
        return self._current.pop(who, None)

    def current(self) -> Mapping[str, Outage]:
        """A snapshot of the outages going on now."""
        return MappingProxyType(dict(self._current))


@attrs.define(eq=False)
class Waiter:
    """Waits out one actor's outage of one thing, trying again with `backoff`."""

    who: str
    what: str
    backoff: Backoff
    outages: Outages
    rng: random.Random | None = None

    @property
    def waiting(self) -> bool:
        """Whether the last try failed."""
        return self.who in self.outages.current()

    async def wait(self, error: BaseException) -> None:
        """Record `error` as a failed try, log it in one line, and sleep until the next try."""
        outage = self.outages.down(self.who, self.what, _one_line(error))
        delay = self.backoff.delay(outage.tries - 1, self.rng)
        logger.warning(
            "%s: %s unavailable (try %d): %s; trying again in %.3gs",
            self.who,
            self.what,
            outage.tries,
            outage.reason,
            delay,
        )
        await trio.sleep(delay)

    def recovered(self) -> None:
        """The last try succeeded: end the outage, if there was one, and say so."""
        outage = self.outages.up(self.who)
        if outage is not None:
            logger.info(
                "%s: %s reachable again after %d failed tries in %.3gs",
                self.who,
                self.what,
                outage.tries,
                trio.current_time() - outage.since,
            )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


async def call_reaching(
    operation: Callable[[], Awaitable[T]], waiter: Waiter, *, patience: float = math.inf
) -> T:
    """`await operation()`, trying again through outages for up to `patience` seconds.

    Raises:
        Unreachable: still an outage after `patience` seconds (the last try's reason in it).
        Exception: whatever else `operation` raised, at once.
    """
    deadline = trio.current_time() + patience
    while True:
        try:
            result = await operation()
        except Exception as exc:
            if not is_outage(exc):
                raise
            if trio.current_time() >= deadline:
                waiter.outages.up(waiter.who)
                raise Unreachable(
                    f"{waiter.what} not reachable within {patience:g}s: {_one_line(exc)}"
                ) from None
            with trio.move_on_at(deadline):
                await waiter.wait(exc)
            continue
        waiter.recovered()
        return result
