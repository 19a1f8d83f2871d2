"""The ticker: the fallback poll, the timer for scheduled retries, and the silent-listener watch."""

from __future__ import annotations

import logging
import math
from typing import NoReturn

import attrs
import trio

from .config import Config
from .listener import Listener
from .wakeups import DrainReport, WakeReason, Wakeups

logger = logging.getLogger(__name__)

# A drain with one of these reasons proves the listener is alive (or just reconnected).
_ANNOUNCED = frozenset({WakeReason.NOTIFY, WakeReason.CONNECT})


@attrs.frozen
class TickerStatistics:
    """What the ticker has done.

    Attributes:
        next_due_at: trio time of the next `DUE` wakeup, or None.
        silent_polls: polls in a row that found unannounced work while the listener was connected.
    """

    next_due_at: float | None
    silent_polls: int


@attrs.define(eq=False)
class Ticker:
    """Wakes the drainer at every poll interval (`TICK`) and when a retry is due (`DUE`).

    It sleeps until the earlier of the next poll and the next due time that the drainer reported,
    so a retry scheduled 1.5 s ahead is claimed 1.5 s later, not at the next poll.

    It also watches for a silent listener: a connection that says it is listening while the
    notifications never come (a proxy in between, a half-open socket). When
    `config.silent_listener_threshold` polls in a row find fresh work that no notification
    announced, it recycles the listener.
    """

    config: Config
    wakeups: Wakeups
    reports: trio.MemoryReceiveChannel[DrainReport]
    listener: Listener
    _next_due_at: float | None = None
    _silent_polls: int = 0

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Tick forever; the first poll is one interval after the start.

        Calls `task_status.started()` at once. Raises nothing of its own.
        """
        # A clone per run: a restarted ticker must not find its channel end closed.
        async with self.reports.clone() as reports:
            next_poll = trio.current_time() + self.config.poll_interval
            task_status.started()
            while True:
                due_at = math.inf if self._next_due_at is None else self._next_due_at
                with trio.move_on_at(min(next_poll, due_at)):
                    self._on_report(await reports.receive())
                    continue
                now = trio.current_time()
                if self._next_due_at is not None and self._next_due_at <= now:
                    self._next_due_at = None
                    self.wakeups.wake(WakeReason.DUE)
                if next_poll <= now:
                    next_poll = now + self.config.poll_interval
                    self.wakeups.wake(WakeReason.TICK)

    def _on_report(self, report: DrainReport) -> None:
        self._next_due_at = report.next_due_at
        if report.reasons & _ANNOUNCED:
            self._silent_polls = 0
        elif WakeReason.TICK in report.reasons:
            if report.found_fresh and self.listener.connected:
                self._silent_polls += 1
            else:
                self._silent_polls = 0
            if self._silent_polls >= self.config.silent_listener_threshold:
                logger.warning(
                    "listener looks silent: %d polls in a row found work no notification "
                    "announced; recycling its connection",
                    self._silent_polls,
                )
                self._silent_polls = 0
                self.listener.recycle()

    def statistics(self) -> TickerStatistics:
        """The ticker's state and counts."""
        return TickerStatistics(next_due_at=self._next_due_at, silent_polls=self._silent_polls)
