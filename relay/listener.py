"""The listener: turns the outbox's notifications into wakeups."""

from __future__ import annotations

import logging
from typing import NoReturn

import attrs
import trio

from .errors import ListenerLost
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
        """Listen until the connection is lost.

        Calls `task_status.started()` once listening has begun (after the `CONNECT` wakeup).
        After `recycle()` it reconnects at once, by itself.

        Raises:
            ListenerLost: the notification stream ended; the supervisor reconnects.
            OutboxUnavailable: the outbox could not be reached (from `outbox.listen()`).
        """
        try:
            while True:
                with trio.CancelScope() as self._connection_scope:
                    async with self.outbox.listen() as notifications:
                        self._connected = True
                        self._connects += 1
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
