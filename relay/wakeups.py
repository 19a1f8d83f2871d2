"""The coalescing wakeup channel between the actors that notice work and the drainer.

A wakeup is a hint, not a message: the outbox table is the truth. So the channel holds at most one
pending wakeup; a `wake()` while one is pending is folded into it and counted as coalesced. A
thousand NOTIFYs during one drain therefore cost one extra claim, not a thousand.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from types import TracebackType

import attrs
import trio


class WakeReason(enum.Enum):
    """Why the drainer was woken."""

    NOTIFY = "notify"  #: the listener received a notification
    CONNECT = "connect"  #: the listener (re)connected: catch up on what was missed
    TICK = "tick"  #: the fallback poll
    DUE = "due"  #: a scheduled retry is due
    MANUAL = "manual"  #: `RelayHandle.wake()`


@attrs.frozen
class WakeupStatistics:
    """Wakeups per reason.

    Attributes:
        sent: wakeups that were queued for the drainer.
        coalesced: wakeups folded into one already pending.
    """

    sent: Mapping[WakeReason, int]
    coalesced: Mapping[WakeReason, int]


@attrs.frozen
class DrainReport:
    """What the drainer tells the ticker after each drain (here, so neither imports the other).

    Attributes:
        reasons: the wakeup reasons behind the drain (empty for a drainer's first drain).
        found_fresh: the drain claimed at least one event never tried before.
        next_due_at: trio time of the earliest scheduled retry, or None.
    """

    reasons: frozenset[WakeReason]
    found_fresh: bool
    next_due_at: float | None


def _by_reason(counter: Counter[WakeReason]) -> dict[WakeReason, int]:
    return {reason: counter[reason] for reason in WakeReason}


@attrs.define(eq=False)
class Wakeups:
    """A buffer-1 memory channel of wakeups that remembers every reason folded into the pending one.

    Any task may `wake()`; one task (the drainer) receives. The receiver learns the set of reasons
    behind a wakeup, so it can tell work a notification announced from work only a poll found.
    """

    _send: trio.MemorySendChannel[None]
    _receive: trio.MemoryReceiveChannel[None]
    _reasons: set[WakeReason] = attrs.field(factory=set)
    _sent: Counter[WakeReason] = attrs.field(factory=Counter)
    _coalesced: Counter[WakeReason] = attrs.field(factory=Counter)

    @classmethod
    def open(cls) -> Wakeups:
        """A new, empty wakeup channel. Close it (or use it as a context manager) when done."""
        send, receive = trio.open_memory_channel[None](1)
        return cls(send, receive)

    def wake(self, reason: WakeReason) -> bool:
        """Ask for a drain, without blocking.

        Returns:
            True if a wakeup was queued, False if it was folded into the one already pending.
        """
        self._reasons.add(reason)
        try:
            self._send.send_nowait(None)
        except trio.WouldBlock:
            self._coalesced[reason] += 1
            return False
        self._sent[reason] += 1
        return True

    async def receive(self) -> frozenset[WakeReason]:
        """Wait for a wakeup; return every reason given since the previous one was taken."""
        while True:
            await self._receive.receive()
            if reasons := self._take_reasons():
                return reasons
            # Empty: a wake() landed between our dequeue and our taking the reasons, so the
            # drain that followed already began after it. Nothing is owed.

    def receive_nowait(self) -> frozenset[WakeReason]:
        """The pending wakeup's reasons, or `trio.WouldBlock` if none is pending."""
        self._receive.receive_nowait()
        return self._take_reasons()

    def _take_reasons(self) -> frozenset[WakeReason]:
        reasons = frozenset(self._reasons)
        self._reasons.clear()
        return reasons

    def statistics(self) -> WakeupStatistics:
        """Wakeups sent and coalesced so far, by reason (every reason present, 0 if none)."""
        return WakeupStatistics(sent=_by_reason(self._sent), coalesced=_by_reason(self._coalesced))

    def close(self) -> None:
        """Close both ends; a later `wake()` raises `trio.ClosedResourceError`."""
        self._send.close()
        self._receive.close()

    def __enter__(self) -> Wakeups:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
