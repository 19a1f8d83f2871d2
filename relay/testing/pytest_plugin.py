"""relay's pytest plugin: fixtures to test your handlers on virtual time, and a real database.

pytest loads it by itself wherever relay is installed (the `pytest11` entry point `relay`);
`-p no:relay` turns it off. It needs pytest-trio: mark tests `@pytest.mark.trio`, or set
`trio_mode = true`. Every fixture is a plain (sync) fixture, so both ways work.

In memory, no database (ask for `autojump_clock` too, and the relay's timers take no real time):

- `memory_outbox`: a `MemoryOutbox`, with fault injection (`fail_next_claim()`, ...).
- `recording_sink`: a `RecordingSink`; `flaky_sink`: a `FlakySink` delivering into it.
- `relay_test_config`: a `relay.Config` without jitter, so retry, restart and outage times are
  exact; override it in your `conftest.py` to test other settings.
- `memory_relay`: `async with memory_relay(handler) as handle:` runs the relay's actors around
  `handler` (a `Sink` or an async callable) on `memory_outbox`, with `relay_test_config`.

A real PostgreSQL database, for integration tests:

- `relay_database_dsn`: the DSN of a fresh database with the outbox migrated, dropped after the
  test. The server is `RELAY_TEST_DSN` when set, else a throwaway embedded one (needs
  `relay-outbox[demo]`); without either, the tests that ask for it are skipped, saying why.

Importing this module starts nothing and connects nowhere; relay's parts are imported by the
fixtures that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .. import Config, RelayHandle
    from ..ports import Handler, Sink
    from .database import Databases
    from .outbox import MemoryOutbox
    from .sinks import FlakySink, RecordingSink

MemoryRelay = Callable[..., AbstractAsyncContextManager["RelayHandle"]]


@pytest.fixture
def memory_outbox() -> MemoryOutbox:
    """An empty in-memory outbox."""
    from .outbox import MemoryOutbox

    return MemoryOutbox()


@pytest.fixture
def recording_sink() -> RecordingSink:
    """A sink that records every batch, with the trio time it came."""
    from .sinks import RecordingSink

    return RecordingSink()


@pytest.fixture
def flaky_sink(recording_sink: RecordingSink) -> FlakySink:
    """A sink that fails or hangs on request and delivers the rest into `recording_sink`."""
    from .sinks import FlakySink

    return FlakySink(recording_sink)


@pytest.fixture
def relay_test_config() -> Config:
    """relay's defaults, without jitter: every retry, restart and outage wait ends at an exact
    time."""
    import attrs

    from .. import Backoff, Config

    defaults = Config()
    exact = {
        field.name: attrs.evolve(getattr(defaults, field.name), jitter=0.0)
        for field in attrs.fields(Config)
        if isinstance(getattr(defaults, field.name), Backoff)
    }
    return attrs.evolve(defaults, **exact)


@pytest.fixture
def memory_relay(memory_outbox: MemoryOutbox, relay_test_config: Config) -> MemoryRelay:
    """`memory_relay(handler, config=None)`: an async context manager running the relay.

    It runs `relay.open_relay(config or relay_test_config, handler, outbox=memory_outbox)` and
    gives its `RelayHandle`; leaving the block stops the relay.
    """
    from .. import open_relay

    def start(
        handler: Sink | Handler, config: Config | None = None
    ) -> AbstractAsyncContextManager[RelayHandle]:
        return open_relay(config or relay_test_config, handler, outbox=memory_outbox)

    return start


@pytest.fixture(scope="session")
def relay_databases() -> Iterator[Databases]:
    """The server behind `relay_database_dsn`, started once per session (skips without one)."""
    from .database import Databases, NoServer, open_test_server

    try:
        with open_test_server() as admin_dsn:
            databases = Databases(admin_dsn)
            try:
                yield databases
            finally:
                databases.close()
    except NoServer as exc:
        pytest.skip(f"relay_database_dsn {exc}")


@pytest.fixture
def relay_database_dsn(relay_databases: Databases) -> Iterator[str]:
    """The DSN of a fresh database with relay's outbox migrated; dropped after the test."""
    dsn = relay_databases.create()
    try:
        yield dsn
    finally:
        relay_databases.drop(dsn)
