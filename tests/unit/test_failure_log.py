"""Per-event failure lines: id, topic, key, attempt n of max, next try or dead, a clean reason."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

import pytest
import trio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, open_relay
from relay import failure_log as failure_log_module
from relay.testing import FlakySink, MemoryOutbox, RecordingSink

from .conftest import make_config

WALL = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.fixture(autouse=True)
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failure_log_module, "_utc_now", lambda: WALL)


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "relay.failures"]


async def test_each_failed_attempt_logs_the_event_its_attempt_and_next_try_then_dead(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = MemoryOutbox()
    flaky = FlakySink(inner=RecordingSink())
    id = outbox.enqueue("orders", 1, key="k1")
    flaky.fail(id, times=None)
    async with open_relay(config, flaky, outbox=outbox):
        await trio.sleep(10)  # attempts at 0, 1 and 3 (backoff 1, 2): dead at 3
    lines = failure_lines(caplog)
    assert [r.getMessage() for r in lines] == [
        "event 1 failed (topic 'orders', key 'k1', attempt 1 of 3),"
        " next try at 2030-01-02T03:04:06.000+00:00: injected failure",
        "event 1 failed (topic 'orders', key 'k1', attempt 2 of 3),"
        " next try at 2030-01-02T03:04:07.000+00:00: injected failure",
        "event 1 failed (topic 'orders', key 'k1', attempt 3 of 3), dead: injected failure",
    ]
    assert [r.levelname for r in lines] == ["WARNING", "WARNING", "ERROR"]
    fields = {
        name: getattr(lines[0], name)
        for name in ("event_id", "topic", "key", "attempt", "max_attempts", "next_try_at", "dead")
    }
    assert fields == {
        "event_id": 1,
        "topic": "orders",
        "key": "k1",
        "attempt": 1,
        "max_attempts": 3,
        "next_try_at": "2030-01-02T03:04:06.000+00:00",
        "dead": False,
    }
    assert (lines[2].next_try_at, lines[2].dead) == (None, True)


async def test_at_most_20_lines_per_10_s_then_one_summary(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = MemoryOutbox()
    flaky = FlakySink(inner=RecordingSink())
    ids = [outbox.enqueue("t", n) for n in range(50)]
    flaky.fail(*ids, times=None)
    # Retries 12 s apart: every retry round falls in a window of its own.
    config = make_config(
        batch_size=100, max_attempts=2, retry_backoff=Backoff(base=12.0, cap=12.0, jitter=0.0)
    )
    async with open_relay(config, flaky, outbox=outbox):
        await trio.sleep(11)
        messages = [r.getMessage() for r in failure_lines(caplog)]
        assert len(messages) == 20  # the 30 others wait for the window to close
        await trio.sleep(2)  # the retries at t=12 close it
    messages = [r.getMessage() for r in failure_lines(caplog)]
    assert messages[20] == "30 more failures in the last 12 s (see relay status)"
    assert len(messages) == 41  # 20 lines of the second round, which stays open
    assert all(" dead: " in m for m in messages[21:])
    assert len(outbox.dead()) == 50


async def test_a_reason_is_masked_and_escaped_alike_in_the_log_and_in_last_error(
    autojump_clock: trio.testing.MockClock, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: ANSI codes raw in both, and `password=` masked in the log only."""
    outbox = MemoryOutbox()
    id = outbox.enqueue("t", 1)

    async def handler(events: Sequence[OutboxEvent]) -> None:
        raise PartialDelivery({id: "HTTP 500: \x1b[31mdb password=hunter2 down\x1b[0m\nline 2"})

    async with open_relay(config, handler, outbox=outbox):
        await trio.sleep(0.5)
    expected = "HTTP 500: \\x1b[31mdb password=*** down\\x1b[0m\\nline 2"
    [row] = outbox.pending_rows()
    assert row.last_error == expected
    [line] = failure_lines(caplog)
    assert line.reason == expected
    assert line.getMessage().endswith(expected)


async def test_an_exception_group_from_a_handler_is_described_by_its_leaves(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("t", 1)

    async def handler(events: Sequence[OutboxEvent]) -> None:
        async with trio.open_nursery() as nursery:

            async def fail() -> None:
                raise ValueError("bad payload")

            nursery.start_soon(fail)

    async with open_relay(config, handler, outbox=outbox):
        await trio.sleep(0.5)
    [row] = outbox.pending_rows()
    assert row.last_error == "ValueError: bad payload"
