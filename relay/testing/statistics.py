"""`MemoryOutboxStatistics`: what `MemoryOutbox.statistics()` returns."""

from __future__ import annotations

import attrs


@attrs.frozen
class MemoryOutboxStatistics:
    """What a `MemoryOutbox` has been asked.

    Attributes:
        claims: `claim()` calls, including failed ones.
        open_claims: claims whose transaction is open right now.
        listening: listen connections open right now.
        listen_attempts: the trio time of every `listen()` call, in order.
    """

    claims: int
    open_claims: int
    listening: int
    listen_attempts: tuple[float, ...]
