"""The metrics, health and readiness endpoints, on MockClock with an in-memory outbox."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from relay import Config, OutboxEvent, RelayHandle, RelayStatistics, WakeReason, open_relay
from relay.daemon.observability import (
    ObservabilityApp,
    Readiness,
    RelayMetrics,
    drain_deadline,
    readiness,
)
from relay.testing import FlakySink, MemoryOutbox, RecordingSink

from .conftest import make_config

# make_config: poll_interval 5, delivery_timeout 2, restart backoff 0.25 s.
DEADLINE = 12.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


@asynccontextmanager
async def client(app: ObservabilityApp) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to `app` in memory: no socket."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
        yield http


@asynccontextmanager
async def observed(
    config: Config, sink: Any, outbox: MemoryOutbox, **kwargs: Any
) -> AsyncIterator[tuple[RelayHandle, RelayMetrics, httpx.AsyncClient]]:
    """A relay with its metrics observing the drainer, and a client of its endpoints."""
    async with open_relay(config, sink, outbox=outbox) as handle:
        metrics = RelayMetrics.create(handle, **kwargs)
        handle.add_batch_observer(metrics.observe_batch)
        async with client(ObservabilityApp(handle, config, metrics)) as http:
            yield handle, metrics, http


def statistics(**overrides: Any) -> RelayStatistics:
    fields: dict[str, Any] = {
        "delivered": 0,
        "retried": 0,
        "dead": 0,
        "held": 0,
        "batches": 0,
        "claims": 0,
        "empty_claims": 0,
        "wakeups": dict.fromkeys(WakeReason, 0),
        "coalesced": dict.fromkeys(WakeReason, 0),
        "restarts": 0,
        "listener_recycles": 0,
        "listener_connected": True,
        "last_drain_at": 0.0,
    }
    fields.update(overrides)
    return RelayStatistics(**fields)


# -- readiness, the rule ---------------------------------------------------------------------------


def test_the_drain_deadline_is_two_polls_and_a_delivery_timeout() -> None:
    assert drain_deadline(make_config()) == DEADLINE


def test_ready_when_connected_and_the_last_drain_is_exactly_at_the_deadline() -> None:
    assert readiness(statistics(last_drain_at=3.0), make_config(), 3.0 + DEADLINE) == Readiness(
        True, "ready"
    )


def test_not_ready_once_the_last_drain_is_past_the_deadline() -> None:
    state = readiness(statistics(last_drain_at=3.0), make_config(), 3.5 + DEADLINE)
    assert state == Readiness(False, "no drain for 12.5s (limit 12s)")


def test_not_ready_while_the_listener_is_disconnected_however_recent_the_drain() -> None:
    state = readiness(statistics(listener_connected=False, last_drain_at=1.0), make_config(), 1.0)
    assert state == Readiness(False, "listener not connected")


def test_not_ready_before_the_first_drain() -> None:
    state = readiness(statistics(last_drain_at=None), make_config(), 0.0)
    assert state == Readiness(False, "no drain yet")


def test_a_recent_batch_counts_as_progress_during_a_long_drain() -> None:
    stats = statistics(last_drain_at=0.0)
    now = 20.0
    assert readiness(stats, make_config(), now, last_batch_at=now - DEADLINE).ready
    assert not readiness(stats, make_config(), now, last_batch_at=now - DEADLINE - 1).ready


# -- readiness, over HTTP --------------------------------------------------------------------------


async def test_readyz_turns_503_at_exactly_the_deadline_after_the_drainer_stops_draining(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with observed(make_config(), RecordingSink(), outbox) as (handle, _, http):
        await trio.sleep(1.0)
        assert handle.statistics().last_drain_at == 0.0
        outbox.hang_next_claim()  # the poll at t=5 starts a drain that never ends
        await trio.sleep_until(DEADLINE)
        ready = await http.get("/readyz")
        await trio.sleep(0.5)
        stale = await http.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert (stale.status_code, stale.text) == (503, "no drain for 12.5s (limit 12s)\n")


async def test_readyz_is_503_while_the_listener_is_away_and_200_once_it_is_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with observed(make_config(), RecordingSink(), outbox) as (_, _, http):
        await trio.sleep(1.0)
        outbox.fail_next_listen()
        outbox.drop_listeners()  # lost at t=1; a reconnect fails at 1.25, succeeds at 1.75
        await trio.sleep(0.1)
        away = await http.get("/readyz")
        await trio.sleep_until(1.0 + 0.25 + 0.5 + 0.01)
        back = await http.get("/readyz")
    assert (away.status_code, away.text) == (
        503,
        "database unavailable (1 failed try): the listen connection ended\n",
    )
    assert (back.status_code, back.text) == (200, "ready\n")


async def test_healthz_answers_200_and_other_paths_and_methods_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with observed(make_config(), RecordingSink(), MemoryOutbox()) as (_, _, http):
        await trio.sleep(0.1)  # past the first drain, for /readyz
        health = await http.get("/healthz")
        missing = await http.get("/")
        post = await http.post("/metrics")
        head = await http.head("/readyz")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert missing.status_code == 404
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    assert (head.status_code, head.content) == (200, b"")


# -- metrics ---------------------------------------------------------------------------------------


async def test_the_counters_are_the_relay_statistics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, flaky = MemoryOutbox(), FlakySink()
    ids = [outbox.enqueue("t", n, key=f"k{n % 3}") for n in range(25)]
    flaky.fail(ids[4], times=None)  # retried twice, then dead (max_attempts 3)
    flaky.fail(ids[7])
    async with observed(make_config(), flaky, outbox) as (handle, _, http):
        await trio.sleep(10.0)
        for _ in range(3):  # at most two find no wakeup pending: one is folded at least
            handle.wake()
        await trio.sleep(1.0)
        response = await http.get("/metrics")
        stats = handle.statistics()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert stats.dead == 1 and stats.coalesced[WakeReason.MANUAL] >= 1  # something to count
    text = response.text
    assert value(text, "relay_delivered_total") == stats.delivered == 24
    assert value(text, "relay_retried_total") == stats.retried
    assert value(text, "relay_dead_total") == stats.dead
    assert value(text, "relay_batches_total") == stats.batches
    for reason in WakeReason:
        assert value(text, "relay_wakeups_total", reason=reason.value) == stats.wakeups[reason]
        assert (
            value(text, "relay_coalesced_wakeups_total", reason=reason.value)
            == stats.coalesced[reason]
        )
    assert value(text, "relay_actor_restarts_total") == stats.restarts
    assert value(text, "relay_listener_recycles_total") == stats.listener_recycles
    assert value(text, "relay_listener_connected") == 1


async def test_restarts_and_a_lost_listener_show_in_the_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with observed(make_config(), RecordingSink(), outbox) as (handle, _, http):
        outbox.fail_next_listen(error=RuntimeError("a bug of relay's own"))
        outbox.drop_listeners()  # an outage (not counted), then a crash (counted)
        await trio.sleep(0.1)
        away = (await http.get("/metrics")).text
        await trio.sleep(1.0)
        back = (await http.get("/metrics")).text
        stats = handle.statistics()
    assert value(away, "relay_listener_connected") == 0
    assert value(back, "relay_listener_connected") == 1
    assert value(back, "relay_actor_restarts_total") == stats.restarts == 1


async def test_the_histograms_observe_each_batch_and_each_delivered_events_lag(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    for n in range(25):
        outbox.enqueue("t", n)
    newest = max(event.created_at for event in outbox.pending())

    async def slow(events: Sequence[OutboxEvent]) -> None:
        await trio.sleep(0.5)

    def wall_clock() -> datetime.datetime:  # every delivery 3 s after the newest event's write
        return newest + datetime.timedelta(seconds=3)

    async with observed(make_config(), slow, outbox, wall_clock=wall_clock) as (handle, _, http):
        await trio.sleep(2.0)
        text = (await http.get("/metrics")).text
        stats = handle.statistics()
    assert stats.batches == 3  # 10 + 10 + 5
    assert value(text, "relay_batch_duration_seconds_count") == 3
    assert value(text, "relay_batch_duration_seconds_sum") == 1.5
    assert value(text, "relay_batch_duration_seconds_bucket", le="0.25") == 0
    assert value(text, "relay_batch_duration_seconds_bucket", le="0.5") == 3
    assert value(text, "relay_end_to_end_lag_seconds_count") == 25
    assert value(text, "relay_end_to_end_lag_seconds_bucket", le="2.5") == 0
    assert value(text, "relay_end_to_end_lag_seconds_bucket", le="5.0") == 25


async def test_failed_events_are_not_observed_as_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox, flaky = MemoryOutbox(), FlakySink()
    ids = [outbox.enqueue("t", n, key="k") for n in range(4)]
    flaky.fail(ids[1], times=None)  # fails for good: 2 and 3 are held behind it until it dies
    async with observed(make_config(), flaky, outbox) as (handle, _, http):
        await trio.sleep(0.5)
        text = (await http.get("/metrics")).text
        stats = handle.statistics()
    assert (stats.delivered, stats.retried, stats.held) == (1, 1, 2)
    assert value(text, "relay_end_to_end_lag_seconds_count") == 1


async def test_the_backlog_gauges_are_read_from_the_outbox_at_scrape_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outbox = MemoryOutbox()
    async with observed(make_config(), RecordingSink(), outbox) as (_, _, http):
        outbox.hang_next_claim()  # the first drain of these never ends: they stay pending
        await trio.sleep(1.0)
        outbox.enqueue("t", 1)
        await trio.sleep(1.0)
        outbox.enqueue("t", 2)
        await trio.sleep(5.0)
        text = (await http.get("/metrics")).text
    assert value(text, "relay_pending_events") == 2
    assert value(text, "relay_oldest_pending_age_seconds") == 6.0
    assert "relay_notification_queue_usage" not in text  # PostgreSQL's alone


async def test_an_empty_outbox_has_no_oldest_pending_age_but_zero(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with observed(make_config(), RecordingSink(), MemoryOutbox()) as (_, _, http):
        text = (await http.get("/metrics")).text
    assert value(text, "relay_pending_events") == 0
    assert value(text, "relay_oldest_pending_age_seconds") == 0


@attrs.define
class NoBacklog:
    """An outbox that cannot tell its backlog: only the `Outbox` protocol itself."""

    inner: MemoryOutbox

    def claim(self, limit: int, max_bytes: int | None = None, share_with: int = 0) -> Any:
        return self.inner.claim(limit, max_bytes, share_with)

    async def next_due(self) -> float | None:
        return await self.inner.next_due()

    def listen(self) -> Any:
        return self.inner.listen()


async def test_an_outbox_without_a_backlog_leaves_the_backlog_gauges_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config()
    async with open_relay(config, RecordingSink(), outbox=NoBacklog(MemoryOutbox())) as handle:
        metrics = RelayMetrics.create(handle)
        async with client(ObservabilityApp(handle, config, metrics)) as http:
            text = (await http.get("/metrics")).text
    assert await handle.backlog() is None
    assert "relay_pending_events" not in text
    assert value(text, "relay_delivered_total") == 0


async def test_two_relays_in_one_process_have_registries_of_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = MemoryOutbox(), MemoryOutbox()
    first.enqueue("t", 1)
    async with (
        observed(make_config(), RecordingSink(), first) as (_, _, one),
        observed(make_config(), RecordingSink(), second) as (_, _, two),
    ):
        await trio.sleep(0.1)
        texts = [(await http.get("/metrics")).text for http in (one, two)]
    assert [value(text, "relay_delivered_total") for text in texts] == [1, 0]


async def test_metrics_speak_openmetrics_to_who_asks_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    accept = "application/openmetrics-text; version=1.0.0"
    async with observed(make_config(), RecordingSink(), MemoryOutbox()) as (_, _, http):
        response = await http.get("/metrics", headers={"accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
