"""Test doubles for relay, and for your own handlers: an in-memory outbox and sinks.

`MemoryOutbox` has the PostgreSQL outbox's semantics (oldest first, rows another claim holds
skipped, key order across retries, rollback when a claim is left unsettled) and fault injection;
`RecordingSink` records what it is given; `FlakySink` fails or hangs on request. Everything runs
on trio's clock, so a test on `MockClock` (pytest-trio's `autojump_clock`) asserts exact times
without sleeping::

    async def test_a_failed_event_is_retried_after_the_backoff(autojump_clock):
        outbox, sink = MemoryOutbox(), RecordingSink()
        flaky = FlakySink(sink)
        config = relay.Config(retry_backoff=relay.Backoff(base=1.5, jitter=0))
        async with relay.open_relay(config, flaky, outbox=outbox):
            flaky.fail(outbox.enqueue("orders.created", {"id": 1}, key="order-1"))
            await sink.wait_for(1)
        assert sink.deliveries[0].at == 1.5
"""

from .batch import MemoryBatch as MemoryBatch
from .outbox import MemoryOutbox as MemoryOutbox
from .rows import DeadEvent as DeadEvent
from .rows import PendingRow as PendingRow
from .sinks import Delivery as Delivery
from .sinks import FlakySink as FlakySink
from .sinks import RecordingSink as RecordingSink
from .statistics import MemoryOutboxStatistics as MemoryOutboxStatistics

__all__ = [
    "DeadEvent",
    "Delivery",
    "FlakySink",
    "MemoryBatch",
    "MemoryOutbox",
    "MemoryOutboxStatistics",
    "PendingRow",
    "RecordingSink",
]
