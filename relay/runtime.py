"""The public runtime: `run_relay` for `nursery.start`, `open_relay` for `async with`."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import NoReturn

import attrs
import trio

from .config import Config
from .drainer import Drainer
from .drainer_reports import BatchObserver, DrainerStatistics
from .errors import NotRestartable, RestartIntensityExceeded
from .listener import Listener
from .outages import Outage, Outages, Waiter
from .ports import Backlog, Handler, Located, Outbox, ReportsBacklog, Sink, as_sink
from .supervisor import ChildSpec, RestartPolicy, StartedOnce, Supervisor
from .ticker import Ticker
from .tracing import batch_tracer
from .wakeups import DrainReport, WakeReason, Wakeups

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class RelayStatistics(DrainerStatistics):
    """A snapshot of a running relay: every field of `DrainerStatistics` (`delivered`,
    `retried`, `dead`, ...: attrs builds this class on it, so each is declared once), and:

    Attributes:
        wakeups: wakeups queued for the drainer, by reason.
        coalesced: wakeups folded into one already pending, by reason.
        restarts: actor restarts by the supervisor.
        listener_recycles: times a silent listener was recycled.
        listener_connected: whether the listener is listening now.
        outages: what the relay is waiting for now (an unreachable database or sink), by who
            waits; empty when nothing is.
    """

    wakeups: Mapping[WakeReason, int]
    coalesced: Mapping[WakeReason, int]
    restarts: int
    listener_recycles: int
    listener_connected: bool
    outages: Mapping[str, Outage] = attrs.field(factory=dict)


@attrs.define(eq=False)
class RelayHandle:
    """What `run_relay` hands back once every actor is up."""

    _wakeups: Wakeups
    _listener: Listener
    _drainer: Drainer
    _supervisor: Supervisor
    _outbox: Outbox
    _outages: Outages

    def statistics(self) -> RelayStatistics:
        """A frozen snapshot of the relay's counters."""
        woken = self._wakeups.statistics()
        listener = self._listener.statistics()
        return RelayStatistics(
            **attrs.asdict(self._drainer.statistics(), recurse=False),
            wakeups=woken.sent,
            coalesced=woken.coalesced,
            restarts=self._supervisor.statistics().restarts,
            listener_recycles=listener.recycles,
            listener_connected=listener.connected,
            outages=self._outages.current(),
        )

    async def backlog(self) -> Backlog | None:
        """The outbox's backlog now, or None if this outbox cannot tell (see `ReportsBacklog`).

        Raises:
            OutboxUnavailable: the outbox could not be asked.
        """
        if isinstance(self._outbox, ReportsBacklog):
            return await self._outbox.backlog()
        return None

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Call `observer(report)` after every settled batch; it must neither block nor raise."""
        self._drainer.add_observer(observer)

    def remove_batch_observer(self, observer: BatchObserver) -> None:
        """Stop calling `observer`."""
        self._drainer.remove_observer(observer)

    async def stop_claiming(self) -> None:
        """Begin a graceful stop: claim no more batches, and return once the batches in flight (if
        any) are settled. The caller then cancels the relay, usually within a grace period."""
        await self._drainer.stop_claiming()

    def wake(self) -> None:
        """Ask for a drain now (a `MANUAL` wakeup); folded into one already pending.

        Raises:
            trio.ClosedResourceError: the relay has stopped.
        """
        self._wakeups.wake(WakeReason.MANUAL)


async def run_relay(
    config: Config,
    sink: Sink | Handler,
    *,
    outbox: Outbox | None = None,
    rng: random.Random | None = None,
    outages: Outages | None = None,
    task_status: trio.TaskStatus[RelayHandle] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the relay until cancelled: listener, ticker and drainer under one supervisor.

    Args:
        config: the relay's configuration.
        sink: a `Sink`, or a plain async callable `handler(events)`.
        outbox: where events wait; None means PostgreSQL at `config.dsn` (the connection pool and,
            if the caller has none, a trio-asyncio loop are opened here and closed on the way out).
            `relay.testing.MemoryOutbox()` runs the same actors in memory.
        rng: the source of jitter for retry, restart and outage backoff; pass a seeded one for
            repeatable tests.
        outages: where the relay records what it waits for (an unreachable database or sink),
            also before it has started; pass one to watch a relay that is still starting.
        task_status: receives a `RelayHandle` once every actor is up (the listener is listening).

    An unreachable database or sink, at start or later, is waited for with
    `config.outage_backoff` for as long as it lasts (bound it with a cancel scope).

    With `opentelemetry-api` installed, each settled batch is recorded as a span linked to its
    events' producers, unless `config.tracing` is `off` (see `relay.tracing`).

    Raises:
        RestartIntensityExceeded: the actors failed more often than `config.restart_intensity`
            within `config.restart_period`; every actor has stopped. Raised bare, not in a group.
        NotRestartable: an actor met an error no restart can mend (`OutputClosed`: the sink's
            output is closed for good); every actor has stopped. Raised bare.
        DsnRejected: the server refused the DSN for good (a `ConfigError`).
        SchemaMissing: the outbox is not migrated.
    """
    the_sink = as_sink(sink)
    the_rng = rng if rng is not None else random.Random()
    the_outages = outages if outages is not None else Outages()
    if outbox is not None:
        await _serve(config, the_sink, outbox, the_rng, the_outages, task_status)
    else:
        from .postgres import open_postgres_outbox

        waiter = Waiter("start", "database", config.outage_backoff, the_outages, the_rng)
        async with open_postgres_outbox(config, waiter=waiter) as postgres:
            await _serve(config, the_sink, postgres, the_rng, the_outages, task_status)


async def _serve(
    config: Config,
    sink: Sink,
    outbox: Outbox,
    rng: random.Random,
    outages: Outages,
    task_status: trio.TaskStatus[RelayHandle],
) -> NoReturn:
    # The drainer must never wait for the ticker, which takes each report at once: the buffer
    # never holds more than a few.
    send_reports, receive_reports = trio.open_memory_channel[DrainReport](math.inf)
    with Wakeups.open() as wakeups, send_reports, receive_reports:
        listener = Listener(
            outbox, wakeups, Waiter("listener", "database", config.outage_backoff, outages, rng)
        )
        ticker = Ticker(config, wakeups, receive_reports, listener)
        drainer = Drainer(config, outbox, sink, wakeups, send_reports, rng, outages)
        if (tracer := batch_tracer(config, sink)) is not None:
            drainer.add_observer(tracer)
        supervisor = Supervisor(
            # Listener first: the drainer's first drain must come after LISTEN, or an event
            # committed in between would wait for the next poll.
            [
                ChildSpec("listener", listener.run),
                ChildSpec("ticker", ticker.run),
                ChildSpec("drainer", drainer.run),
            ],
            RestartPolicy.from_config(config),
            rng,
        )
        handle = RelayHandle(wakeups, listener, drainer, supervisor, outbox, outages)

        def started(_: None) -> None:
            logger.info(
                "relay running on %s, schema %s (batch size %d, poll every %ss)",
                outbox.where if isinstance(outbox, Located) else type(outbox).__name__,
                config.schema,
                config.batch_size,
                config.poll_interval,
            )
            task_status.started(handle)

        await supervisor.run(task_status=StartedOnce(started))
    raise AssertionError("unreachable: permanent children never all end")


@asynccontextmanager
async def open_relay(
    config: Config,
    sink: Sink | Handler,
    *,
    outbox: Outbox | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[RelayHandle]:
    """Run the relay for the duration of an `async with` block; see `run_relay`.

    Yields the `RelayHandle` once every actor is up; leaving the block stops the relay. The relay
    owns its nursery: an error in the block is raised as it is, not in an exception group.

    Raises:
        RestartIntensityExceeded: the relay gave up, before or during the block (which is then
            cancelled).
        NotRestartable: the relay stopped on an error no restart can mend (`OutputClosed`).
    """
    failure: RestartIntensityExceeded | NotRestartable | None = None
    error: BaseException | None = None

    async def relay(*, task_status: trio.TaskStatus[RelayHandle]) -> None:
        nonlocal failure
        status = StartedOnce(task_status.started)
        try:
            await run_relay(config, sink, outbox=outbox, rng=rng, task_status=status)
        except (RestartIntensityExceeded, NotRestartable) as error:
            if not status.called:
                raise  # nursery.start raises it as it is
            failure = error
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        try:
            yield await nursery.start(relay)
        except BaseException as exc:
            # Kept out of the nursery, which would wrap it in an exception group; raised below.
            error = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure  # the block saw our own cancellation: that is not its error
    if error is not None:
        raise error
