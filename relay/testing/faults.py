"""`FaultQueue`: the failures and hangs a test asked a `MemoryOutbox` for, queued per operation."""

from __future__ import annotations

from collections import deque
from typing import Literal

import attrs
import trio

from ..errors import OutboxUnreachable

# Not exported: the public fault-injection API is one typed method per operation, on MemoryOutbox.
Operation = Literal["claim", "settle", "listen"]
_HANG: Literal["hang"] = "hang"


@attrs.define(eq=False)
class FaultQueue:
    """Faults queued per operation, used one per call, in order. A fault is spent even when the
    call it hit is cancelled."""

    _faults: dict[Operation, deque[Exception | Literal["hang"]]] = attrs.field(factory=dict)

    def add_failures(self, operation: Operation, n: int, error: Exception | None) -> None:
        """Make the next `n` calls of `operation` raise `error` (default `OutboxUnreachable`)."""
        # Checked here, at the call, so a mistake fails the test's own line rather than the relay.
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if error is not None and not isinstance(error, Exception):
            raise TypeError(f"error must be an exception instance, got {error!r}")
        faults = self._faults.setdefault(operation, deque())
        for _ in range(n):
            faults.append(
                error if error is not None else OutboxUnreachable(f"{operation}: injected failure")
            )

    def add_hang(self, operation: Operation) -> None:
        """Make the next call of `operation` wait until it is cancelled."""
        self._faults.setdefault(operation, deque()).append(_HANG)

    async def apply(self, operation: Operation) -> None:
        """A checkpoint, then the next fault queued for `operation`, if any: raise it or hang."""
        await trio.lowlevel.checkpoint()
        faults = self._faults.get(operation)
        if faults:
            fault = faults.popleft()
            if fault == _HANG:
                await trio.sleep_forever()
            assert isinstance(fault, Exception)
            raise fault
