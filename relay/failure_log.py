"""One log line per failed event: which, which attempt, when next or dead, and why; rate-limited.

A failing destination can fail thousands of events a second: after `LIMIT` lines within `WINDOW`
seconds the rest are counted, and said in one summary line once the window has passed (`relay
status` and `last_error` hold every reason). The window runs on `trio.current_time()`, so
MockClock tests are exact.

Each line carries its fields as `extra`, which the daemon's JSON logs show as top-level keys:
`event_id`, `topic`, `key`, `attempt`, `max_attempts`, `next_try_at` (ISO 8601, or None once
dead), `dead`, `reason`.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import attrs
import trio

from .ports import OutboxEvent, Retry
from .reasons import clean_reason

LIMIT = 20  # lines per window
WINDOW = 10.0  # seconds

logger = logging.getLogger("relay.failures")


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.define(eq=False)
class FailureLog:
    """Cleans the reasons of a batch's failures and logs each failed event, `limit` per `window`.

    Attributes:
        secrets: masked in every reason, besides whatever looks like a secret.
    """

    secrets: Sequence[str] = ()
    limit: int = LIMIT
    window: float = WINDOW
    _window_start: float = -math.inf
    _logged: int = 0
    _unlogged: int = 0

    def clean(self, failures: Mapping[int, str]) -> dict[int, str]:
        """Each reason as it may be logged and stored as `last_error` (`clean_reason`)."""
        return {id: clean_reason(reason, self.secrets) for id, reason in failures.items()}

    def record(
        self,
        events: Iterable[OutboxEvent],
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        max_attempts: int,
    ) -> None:
        """Log each of `events` that is in `retry` or `bury`, in order, within the rate limit.

        Call it for every settled batch, failures or not: a window that has passed is closed
        here, with its summary line.
        """
        now = trio.current_time()
        if now >= self._window_start + self.window:
            self._close_window(now)
        if not (retry or bury):
            return
        # Wall-clock time, not trio's: an operator reads it.
        wall = _utc_now()
        for event in events:
            if event.id in retry:
                next_try: datetime.datetime | None = wall + datetime.timedelta(
                    seconds=retry[event.id].delay
                )
                reason = retry[event.id].reason
            elif event.id in bury:
                next_try, reason = None, bury[event.id]
            else:
                continue
            if self._logged >= self.limit:
                self._unlogged += 1
            else:
                self._logged += 1
                _log(event, event.attempts + 1, max_attempts, next_try, reason)

    def _close_window(self, now: float) -> None:
        if self._unlogged:
            logger.warning(
                "%d more failures in the last %.0f s (see relay status)",
                self._unlogged,
                now - self._window_start,
                extra={"unlogged_failures": self._unlogged},
            )
        self._window_start, self._logged, self._unlogged = now, 0, 0


def _log(
    event: OutboxEvent,
    attempt: int,
    max_attempts: int,
    next_try: datetime.datetime | None,
    reason: str,
) -> None:
    next_try_at = None if next_try is None else next_try.isoformat(timespec="milliseconds")
    # repr: a writer's topic or key may hold control characters; it shows them escaped.
    logger.log(
        logging.ERROR if next_try_at is None else logging.WARNING,
        "event %d failed (topic %r, key %r, attempt %d of %d), %s: %s",
        event.id,
        event.topic,
        event.key,
        attempt,
        max_attempts,
        "dead" if next_try_at is None else f"next try at {next_try_at}",
        reason,
        extra={
            "event_id": event.id,
            "topic": event.topic,
            "key": event.key,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "next_try_at": next_try_at,
            "dead": next_try_at is None,
            "reason": reason,
        },
    )
