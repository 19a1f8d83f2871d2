"""The listener: turns the outbox's notifications into wakeups."""

from __future__ import annotations

import logging
from typing import NoReturn

import attrs
import trio

from .config import Config
from .errors import ListenerLost
from .outages import Outages, Waiter, is_outage
from .ports import Outbox
from .wakeups import WakeReason, Wakeups

logger = logging.getLogger(__name__)


@attrs.frozen
class ListenerStatistics:
    """What the listener has seen.

    Attributes:
        connected: listening right now.
        connects: connections made so far (the first one and every reconnect).
        notifications: notifications received.
        recycles: connections dropped on purpose by `recycle()`.
    """

    connected: bool
    connects: int
    notifications: int
    recycles: int


@attrs.define(eq=False)
class Listener:
    """Listens on its own connection and wakes the drainer once per notification.

    Every (re)connect sends a `CONNECT` wakeup first: notifications sent while it was away are gone,
    so the drainer must look at the table.
    """

    outbox: Outbox
    wakeups: Wakeups
    # Connecting and reconnecting wait through outages here, never as crashes of the supervisor's.
    waiter: Waiter = attrs.field(
        factory=lambda: Waiter("listener", "database", Config().outage_backoff, Outages())
    )
    _connected: bool = False
    _connects: int = 0
    _notifications: int = 0
    _recycles: int = 0
    _connection_scope: trio.CancelScope | None = None

    @property
    def connected(self) -> bool:
        """Whether the listener is listening right now."""
        return self._connected

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Listen forever, reconnecting as often as needed.

        Calls `task_status.started()` once listening has begun (after the `CONNECT` wakeup). A
        connection that cannot be made or is lost (an outage) is tried again after `waiter`'s
        backoff, for as long as it takes; after `recycle()` it reconnects at once.

        Raises:
            Exception: whatever is not an outage (say, `SchemaMissing`): a crash.
        """
        try:
            while True:
                with trio.CancelScope() as self._connection_scope:
                    try:
                        async with self.outbox.listen() as notifications:
                            self._connected = True
                            self._connects += 1
                            self.waiter.recovered()
                            try:
                                self.wakeups.wake(WakeReason.CONNECT)
                                task_status.started()
                                task_status = trio.TASK_STATUS_IGNORED
                                async for _ in notifications:
                                    self._notifications += 1
                                    self.wakeups.wake(WakeReason.NOTIFY)
                            finally:
                                self._connected = False
                        raise ListenerLost("the listen connection ended")
                    except Exception as exc:
                        if not is_outage(exc):
                            raise
                        await self.waiter.wait(exc)
                        continue
                logger.info("listener: reconnecting after recycle")
        finally:
            self._connection_scope = None

    def recycle(self) -> None:
        """Drop the current connection (or connection attempt); `run()` reconnects at once."""
        if self._connection_scope is not None:
            self._recycles += 1
            self._connection_scope.cancel()

    def statistics(self) -> ListenerStatistics:
        """What the listener has seen so far."""
        return ListenerStatistics(
            connected=self._connected,
            connects=self._connects,
            notifications=self._notifications,
            recycles=self._recycles,
        )
