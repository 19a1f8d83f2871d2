"""`MemoryBatch`: a claim on a `MemoryOutbox`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import attrs

from ..ports import OutboxEvent, Retry

if TYPE_CHECKING:
    from .outbox import MemoryOutbox


@attrs.define(eq=False)
class MemoryBatch:
    """A claim on a `MemoryOutbox`: `events`, held until the claim block ends."""

    _outbox: MemoryOutbox
    events: tuple[OutboxEvent, ...]
    settled: bool = False
    contended: bool = False  # one process owns a MemoryOutbox: no other relay holds partitions
    next_due: float | None = None

    async def settle(
        self,
        *,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int] = (),
        defer: Mapping[int, Retry] | None = None,
    ) -> None:
        """Commit the outcome; see `relay.ports.ClaimedBatch.settle`."""
        await self._outbox._settle(self, retry, bury, hold, defer or {})
