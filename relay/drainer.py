"""The drainer: claims batches, hands them to the sink, settles the outcome."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NoReturn

import attrs
import trio

from .config import Config
from .drainer_reports import BatchObserver, BatchReport, DrainerStatistics
from .errors import NotRestartable, PartialDelivery, SinkUnavailable
from .failure_log import FailureLog
from .outages import Outages, Waiter, is_outage
from .ports import ClaimedBatch, Outbox, OutboxEvent, Sink
from .reasons import describe_error
from .secrets import find_secrets
from .settlement import ALL_DELIVERED, Outcome, settle_plan
from .wakeups import DrainReport, WakeReason, Wakeups

logger = logging.getLogger(__name__)

# Seconds to wait before claiming again when other relays held every partition on offer.
CONTENTION_PAUSE = 0.01


@attrs.frozen
class _Claimed:
    """What one claim came to.

    Attributes:
        events: the events claimed.
        contended: other relays crowded the claim, so a short batch does not mean drained.
        held: an event was held back behind a failure of its key.
        next_due_at: trio time of the earliest scheduled retry known after the batch, or None.
    """

    events: Sequence[OutboxEvent]
    contended: bool
    held: bool
    next_due_at: float | None


@attrs.define
class _Drain:
    """One drain, as its lanes share it.

    Attributes:
        lanes: lanes running (claiming or delivering).
        backlog: a claim of this drain came back full: from then on claims leave room for the
            other lanes, and more lanes start.
        found_fresh: some batch held an event never tried before.
        next_due_at: each ended lane's last `_Claimed.next_due_at`.
        failures: what ended lanes early, this round.
    """

    lanes: int = 0
    backlog: bool = False
    found_fresh: bool = False
    next_due_at: list[float | None] = attrs.field(factory=list)
    failures: list[Exception] = attrs.field(factory=list)


def _waited_out(exc: Exception) -> bool:
    """An unreachable database: the drainer waits for it rather than raise."""
    return is_outage(exc) and not isinstance(exc, SinkUnavailable)


@attrs.define(eq=False)
class Drainer:
    """One task that drains the outbox on every wakeup, until a batch comes back short.

    If the sink is an async context manager, the drainer enters it for as long as it runs, so a
    restarted drainer reconnects its sink.
    """

    config: Config
    outbox: Outbox
    sink: Sink
    wakeups: Wakeups
    reports: trio.MemorySendChannel[DrainReport]
    rng: random.Random = attrs.field(factory=random.Random)
    outages: Outages = attrs.field(factory=Outages)
    _database: Waiter = attrs.field(init=False)
    _destination: Waiter = attrs.field(init=False)
    _statistics: DrainerStatistics = attrs.field(factory=DrainerStatistics)
    _stopping: bool = False
    # One event per claim open now, set when it closes.
    _batches_in_flight: set[trio.Event] = attrs.field(factory=set)
    _observers: list[BatchObserver] = attrs.field(factory=list)
    # Every reason passes through it before it is logged or stored as `last_error`.
    failure_log: FailureLog = attrs.field(
        default=attrs.Factory(lambda self: FailureLog(find_secrets(self.config.dsn)), True)
    )

    def __attrs_post_init__(self) -> None:
        backoff = self.config.outage_backoff
        self._database = Waiter("drainer", "database", backoff, self.outages, self.rng)
        self._destination = Waiter("sink", "sink", backoff, self.outages, self.rng)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Drain on every wakeup, forever.

        Calls `task_status.started()` once the sink is entered. A wakeup pending at the start is
        taken at once; without one the drainer drains anyway, since a crash before the restart may
        have put events back that nobody will announce.

        Outages are waited for here, with `config.outage_backoff`, never raised: an unreachable
        database between claims, and a `SinkUnavailable` (from entering the sink or delivering, the
        batch rolled back untouched), after which the sink is left and entered again.

        Raises:
            OutputClosed: the sink's output is closed for good (a `NotRestartable`): the batch was
                rolled back untouched, and the supervisor stops the relay.
            Exception: whatever else claiming, settling, entering or leaving the sink raised.
        """
        # A clone per run: a restarted drainer must not find its channel end closed.
        async with self.reports.clone() as reports:
            while True:
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        if isinstance(self.sink, contextlib.AbstractAsyncContextManager):
                            await stack.enter_async_context(self.sink)
                        task_status.started()
                        task_status = trio.TASK_STATUS_IGNORED
                        try:
                            reasons = self.wakeups.receive_nowait()
                        except trio.WouldBlock:
                            reasons = frozenset()
                        while not self._stopping:
                            await self._drain(reasons, reports)
                            reasons = await self.wakeups.receive()
                        await trio.sleep_forever()
                except SinkUnavailable as exc:
                    if isinstance(exc, NotRestartable):
                        raise  # a closed output never comes back: waiting would hold for ever
                    await self._destination.wait(exc)

    async def _drain(
        self, reasons: frozenset[WakeReason], reports: trio.MemorySendChannel[DrainReport]
    ) -> None:
        drain = _Drain()
        while not self._stopping:
            drain.failures.clear()
            async with trio.open_nursery() as nursery:
                drain.lanes += 1  # the first lane runs in this task, others in the nursery
                await self._lane(drain, nursery)
            failure = next((exc for exc in drain.failures if not _waited_out(exc)), None)
            if failure is not None:
                raise failure
            if not drain.failures:
                break
            # Every batch in flight rolled back untouched; a graceful stop need not wait for this.
            await self._database.wait(drain.failures[0])
        if self._stopping:
            return
        self._statistics = attrs.evolve(self._statistics, last_drain_at=trio.current_time())
        next_due_at = min((due for due in drain.next_due_at if due is not None), default=None)
        reports.send_nowait(
            DrainReport(reasons=reasons, found_fresh=drain.found_fresh, next_due_at=next_due_at)
        )

    async def _lane(self, drain: _Drain, nursery: trio.Nursery) -> None:
        """Claim and deliver batches one after the other until one comes back short.

        A claim that leaves more waiting starts another lane, up to `config.claims_in_flight`,
        whose claim then overlaps this batch's delivery: the two hold different partitions, so
        never the same key. A failure ends every lane after its batch in flight; `_drain` decides.
        """
        more_waits = functools.partial(self._overlap, drain, nursery)
        claimed = None
        try:
            while not (self._stopping or drain.failures):
                settled = trio.Event()
                self._batches_in_flight.add(settled)
                try:
                    share_with = self.config.claims_in_flight - 1 if drain.backlog else 0
                    claimed = await self._claim_and_deliver(more_waits, share_with)
                except Exception as exc:
                    drain.failures.append(exc)
                    return
                finally:
                    settled.set()
                    self._batches_in_flight.discard(settled)
                self._database.recovered()
                events = claimed.events
                drain.found_fresh = drain.found_fresh or any(e.attempts == 0 for e in events)
                if claimed.contended and not events:
                    if drain.lanes > 1:
                        return  # our other lanes hold the head of the queue: they go on
                    # Other relays hold every partition at the head of the queue: let them move on.
                    await trio.sleep(CONTENTION_PAUSE)
                elif (
                    len(events) < self.config.batch_size
                    and not claimed.contended
                    and not claimed.held
                ):
                    # Held events are claimed again at once: behind a retry the claim skips them,
                    # behind a burial they are free, and no notification would announce them.
                    return
        finally:
            drain.lanes -= 1
            if claimed is not None and not drain.failures:
                drain.next_due_at.append(claimed.next_due_at)

    def _overlap(self, drain: _Drain, nursery: trio.Nursery, batch: ClaimedBatch) -> None:
        """Called with each batch as it is claimed: another lane if a backlog waits behind it.

        Below a backlog one claim at a time is as fast, and its claim takes the whole head of
        the queue in one round trip: two would share it, and each commit costs a flush.
        """
        if len(batch.events) >= self.config.batch_size:
            drain.backlog = True
        # Not after an empty claim: its lane is about to end, another would find nothing either.
        more_waits = (
            drain.backlog
            and bool(batch.events)
            and (batch.contended or len(batch.events) >= self.config.batch_size)
        )
        if (
            more_waits
            and drain.lanes < self.config.claims_in_flight
            and not (self._stopping or drain.failures)
        ):
            drain.lanes += 1
            nursery.start_soon(self._lane, drain, nursery)

    async def _claim_and_deliver(
        self, claimed: Callable[[ClaimedBatch], None], share_with: int = 0
    ) -> _Claimed:
        """Claim and deliver one batch, calling `claimed(batch)` between the two; the claim
        leaves room at the head of the queue for `share_with` more of ours."""
        started = trio.current_time()
        delivered: tuple[OutboxEvent, ...] = ()
        outcome = None
        size, max_bytes = self.config.batch_size, self.config.batch_bytes
        async with self.outbox.claim(size, max_bytes, share_with) as batch:
            self._count(claims=1)
            events = batch.events
            claimed(batch)
            if events:
                self._count(batches=1)
                delivered, outcome = await self._deliver(batch)
                self._destination.recovered()
            else:
                self._count(empty_claims=1)
        settled = trio.current_time()
        if events and self._observers:
            put_back = 0 if outcome is None else len(outcome.defer) + len(outcome.hold)
            report = BatchReport(settled - started, len(events), delivered, tuple(events), put_back)
            self._notify(report)
        # The earliest retry: what the claim saw, or one this batch has just scheduled.
        due = [] if batch.next_due is None else [started + batch.next_due]
        if outcome is not None:
            due += (settled + retry.delay for retry in outcome.retry.values())
            due += (settled + defer.delay for defer in outcome.defer.values())
        return _Claimed(
            events=events,
            contended=batch.contended,
            held=outcome is not None and bool(outcome.hold),
            next_due_at=min(due, default=None),
        )

    def add_observer(self, observer: BatchObserver) -> None:
        """Call `observer(report)` after every settled batch; it must neither block nor raise."""
        self._observers.append(observer)

    def remove_observer(self, observer: BatchObserver) -> None:
        """Stop calling `observer`."""
        self._observers.remove(observer)

    def _notify(self, report: BatchReport) -> None:
        for observer in list(self._observers):
            try:
                observer(report)
            except Exception:  # a broken metric must not stop delivery
                logger.exception("batch observer %r failed", observer)

    async def stop_claiming(self) -> None:
        """Claim no more; return once every batch in flight is settled or rolled back."""
        self._stopping = True
        for settled in list(self._batches_in_flight):
            await settled.wait()

    async def _deliver(self, batch: ClaimedBatch) -> tuple[tuple[OutboxEvent, ...], Outcome]:
        events = batch.events
        failures: dict[int, str] = {}
        permanent: Collection[int] = ()
        unavailable: Mapping[int, float] = {}
        held: Collection[int] = ()
        # The claim holds a transaction open: a hanging sink must not keep it open for ever.
        with trio.move_on_after(self.config.delivery_timeout) as scope:
            try:
                await self.sink.deliver(events)
            except PartialDelivery as partial:
                claimed = {event.id for event in events}
                failures = {id: reason for id, reason in partial.failures.items() if id in claimed}
                permanent = partial.permanent
                unavailable = partial.unavailable
                held = partial.held & claimed
            except SinkUnavailable:
                # Not the events' fault: leaving the claim unsettled puts them back as they were
                # (no attempt counted); `run` waits, then enters the sink again, which reconnects.
                raise
            except Exception as exc:  # any sink error fails the whole batch, the relay goes on
                logger.warning("sink failed a batch of %d events", len(events), exc_info=True)
                failures = dict.fromkeys((event.id for event in events), describe_error(exc))
        if scope.cancelled_caught:
            logger.warning(
                "sink timed out on a batch of %d events after %ss",
                len(events),
                self.config.delivery_timeout,
            )
            failures = dict.fromkeys(
                (event.id for event in events),
                f"delivery timed out after {self.config.delivery_timeout}s",
            )
        outcome = settle_plan(
            events,
            self.failure_log.clean(failures),
            config=self.config,
            rng=self.rng,
            permanent=permanent,
            unavailable=unavailable,
            held=held,
        )
        await batch.settle(
            retry=outcome.retry, bury=outcome.bury, hold=outcome.hold, defer=outcome.defer
        )
        self.failure_log.record(events, outcome.retry, outcome.bury, self.config.max_attempts)
        if outcome is ALL_DELIVERED:
            delivered = tuple(events)
        else:
            failed = outcome.retry.keys() | outcome.bury.keys() | outcome.defer.keys()
            failed |= outcome.hold
            delivered = tuple(event for event in events if event.id not in failed)
        self._count(
            delivered=len(delivered),
            retried=len(outcome.retry),
            dead=len(outcome.bury),
            held=len(outcome.hold),
            deferred=len(outcome.defer),
        )
        return delivered, outcome

    def _count(self, **counts: int) -> None:
        now = self._statistics
        self._statistics = attrs.evolve(
            now, **{name: getattr(now, name) + n for name, n in counts.items()}
        )

    def statistics(self) -> DrainerStatistics:
        """Counts since the drainer was created (they survive restarts)."""
        return self._statistics
