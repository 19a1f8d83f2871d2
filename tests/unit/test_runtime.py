"""run_relay and open_relay: start, statistics, giving up, stopping."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import pytest
import trio

from relay import (
    Backoff,
    Config,
    OutboxUnreachable,
    RelayStatistics,
    RestartIntensityExceeded,
    WakeReason,
    open_relay,
    run_relay,
)
from relay.testing import FlakySink, MemoryOutbox, RecordingSink

from .conftest import all_tasks, make_config


async def test_run_relay_raises_restart_intensity_exceeded_bare_after_exactly_the_allowed_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(restart_intensity=2)
    outbox = MemoryOutbox()
    bug = RuntimeError("a bug of relay's own")
    for _ in range(5):
        outbox.fail_next_listen(error=bug)
    with pytest.raises(RestartIntensityExceeded) as caught:
        await run_relay(config, RecordingSink(), outbox=outbox)
    assert outbox.statistics().listen_attempts == (0.0, 0.25, 0.75)
    assert trio.current_time() == 0.75
    assert caught.value.__cause__ is bug


async def test_an_outage_however_long_is_waited_out_and_never_counts_as_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Restart intensity 2, and 30 refused connects in a row: the relay waits, then starts."""
    config = make_config(restart_intensity=2)
    outbox = MemoryOutbox()
    for _ in range(30):
        outbox.fail_next_listen(error=OutboxUnreachable("listen failed at db: connection refused"))
    event_id = outbox.enqueue("t", 1)
    sink = RecordingSink()
    async with open_relay(config, sink, outbox=outbox) as handle:
        # 0.25, 0.5, 1, 2, then the 4 s cap: 26 waits of 4 s
        assert trio.current_time() == 0.25 + 0.5 + 1 + 2 + 26 * 4.0
        await sink.wait_for(1)
        await trio.sleep(0.5)
        stats = handle.statistics()
    assert (stats.restarts, stats.outages, stats.delivered) == (0, {}, 1)
    assert sink.deliveries[0].events[0].id == event_id


async def test_open_relay_raises_restart_intensity_exceeded_bare_when_it_gives_up_in_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(restart_intensity=2)
    outbox = MemoryOutbox()
    before = all_tasks()
    with pytest.raises(RestartIntensityExceeded):
        async with open_relay(config, RecordingSink(), outbox=outbox):
            for _ in range(3):
                outbox.fail_next_listen(error=RuntimeError("a bug of relay's own"))
            # lost: an outage waited 0.25 s; then three crashes, restarted after 0.25 and 0.5 s
            outbox.drop_listeners()
            await trio.sleep_forever()
    assert trio.current_time() == 1.0
    assert all_tasks() == before


async def test_open_relay_raises_restart_intensity_exceeded_bare_when_it_gives_up_starting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    for _ in range(3):
        outbox.fail_next_listen(error=RuntimeError("a bug of relay's own"))
    with pytest.raises(RestartIntensityExceeded):
        async with open_relay(make_config(restart_intensity=2), RecordingSink(), outbox=outbox):
            pytest.fail("the relay started")  # pragma: no cover
    assert trio.current_time() == 0.75


async def test_an_error_in_the_open_relay_block_is_raised_as_it_is(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    with pytest.raises(KeyError):
        async with open_relay(config, RecordingSink(), outbox=MemoryOutbox()):
            raise KeyError("mine")


async def test_cancelling_the_relay_stops_every_actor_and_leaves_no_task_behind(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    outbox = MemoryOutbox()
    flaky = FlakySink()
    flaky.hang_next_batch()
    before = all_tasks()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_relay, config, flaky, outbox=outbox))
            outbox.enqueue("t", 1)
            await trio.sleep(0.5)  # mid-delivery, its claim open
            assert len(all_tasks()) >= len(before) + 4  # the supervisor's wrappers, at least
            assert outbox.statistics().open_claims == 1
            scope.cancel()
    assert all_tasks() == before
    assert trio.current_time() == 0.5
    stats = outbox.statistics()
    assert (stats.open_claims, stats.listening) == (0, 0)
    assert [(event.id, event.attempts) for event in outbox.pending()] == [(1, 0)]  # rolled back


async def test_leaving_open_relay_leaves_no_task_behind(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    before = all_tasks()
    async with open_relay(config, RecordingSink(), outbox=MemoryOutbox()):
        assert all_tasks() > before
    assert all_tasks() == before


async def test_statistics_count_what_happened(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(claims_in_flight=1)  # one lane: the claims can be counted exactly
    outbox, flaky = MemoryOutbox(), FlakySink()
    for n in range(12):
        outbox.enqueue("t", n)
    flaky.fail(3)
    async with open_relay(config, flaky, outbox=outbox) as handle:
        await trio.sleep(1.5)
        # t=0, CONNECT: a full batch of 10 (3 fails), a short one of 2; t=1, DUE: event 3 alone
        assert handle.statistics() == RelayStatistics(
            delivered=12,
            retried=1,
            dead=0,
            held=0,
            batches=3,
            claims=3,
            empty_claims=0,
            wakeups={**dict.fromkeys(WakeReason, 0), WakeReason.CONNECT: 1, WakeReason.DUE: 1},
            coalesced=dict.fromkeys(WakeReason, 0),
            restarts=0,
            listener_recycles=0,
            listener_connected=True,
            last_drain_at=1.0,
        )


async def test_wake_asks_for_a_drain_now(
    autojump_clock: trio.testing.MockClock, config: Config
) -> None:
    async with open_relay(config, RecordingSink(), outbox=MemoryOutbox()) as handle:
        await trio.sleep(2.0)
        handle.wake()
        await trio.sleep(0.5)
        stats = handle.statistics()
    assert (stats.wakeups[WakeReason.MANUAL], stats.empty_claims, stats.last_drain_at) == (
        1,
        2,
        2.0,
    )


async def test_a_sink_that_is_neither_a_sink_nor_async_is_refused(config: Config) -> None:
    def not_async(events: object) -> None: ...

    with pytest.raises(TypeError):
        await run_relay(config, not_async, outbox=MemoryOutbox())  # type: ignore[arg-type]


def test_importing_relay_does_not_load_trio_asyncio() -> None:
    code = "import relay, sys; assert 'trio_asyncio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_the_testing_module_example_holds(autojump_clock: trio.testing.MockClock) -> None:
    outbox, sink = MemoryOutbox(), RecordingSink()
    flaky = FlakySink(sink)
    config = Config(retry_backoff=Backoff(base=1.5, jitter=0))
    async with open_relay(config, flaky, outbox=outbox):
        flaky.fail(outbox.enqueue("orders.created", {"id": 1}, key="order-1"))
        await sink.wait_for(1)
    assert sink.deliveries[0].at == 1.5
