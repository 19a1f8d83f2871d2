"""Outages are a normal state: a relay waits through 30 s without its database or its broker, at
start and mid-run, then resumes by itself, loses nothing, counts no attempt and never gives up.

The database is real PostgreSQL reached through `tests/tcp_proxy.py`, the broker the Redis on
127.0.0.1 through another proxy: a proxy that goes down cuts every connection and refuses new
ones, without touching the servers other tests use. Small outage backoff caps make resuming quick;
the outages themselves last the full 30 s.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import attrs
import psycopg
import pytest
import redis
import trio
from psycopg import conninfo

from relay import Backoff, Config, OutboxEvent, RelayHandle, Sink, run_relay
from relay.outages import Outages
from relay.sinks import SinkOptions, open_sink

from ..conftest import pending_count
from ..redis_server import REDIS_PORT, redis_answers
from ..tcp_proxy import TcpProxy, open_tcp_proxy

pytestmark = pytest.mark.chaos

OUTAGE = 30.0  # seconds without the server, as the issue asks
GUARD = OUTAGE + 60.0


def _config(dsn: str) -> Config:
    # Intensity 1: an outage counted as a crash would make the relay give up at once.
    return Config(
        dsn=dsn,
        poll_interval=1.0,
        restart_intensity=1,
        outage_backoff=Backoff(base=0.1, cap=1.0),
        delivery_timeout=5.0,
    )


def _through(proxy: TcpProxy, dsn: str) -> str:
    return conninfo.make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))


def _insert(dsn: str, count: int) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 'orders', 'k' || mod(g, 7),"
            " jsonb_build_object('n', g) FROM generate_series(1, %s) g RETURNING id",
            [count],
        ).fetchall()
    return [row[0] for row in rows]


def _dead(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM relay.outbox_dead").fetchone()
    assert row is not None
    return int(row[0])


@attrs.define(eq=False)
class Recording:
    """Wraps a sink (entered with it, if it is entered) and records what it took, and when."""

    inner: Any
    delivered: list[OutboxEvent] = attrs.field(factory=list)

    async def __aenter__(self) -> Recording:
        if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
            await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if isinstance(self.inner, contextlib.AbstractAsyncContextManager):
            await self.inner.__aexit__(*exc_info)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        if self.inner is not None:
            await self.inner.deliver(events)
        self.delivered.extend(events)

    def ids(self) -> set[int]:
        return {event.id for event in self.delivered}


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (what it watches cannot signal us), failing after `GUARD` seconds."""
    with trio.move_on_after(GUARD) as scope:
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.05)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def _relay(config: Config, sink: Sink, outages: Outages) -> AsyncIterator[list[RelayHandle]]:
    """A relay started in the background: the list gets its handle once it is up."""
    handles: list[RelayHandle] = []
    async with trio.open_nursery() as nursery:

        async def start() -> None:
            handles.append(await nursery.start(partial(run_relay, config, sink, outages=outages)))

        nursery.start_soon(start)
        yield handles
        nursery.cancel_scope.cancel()


def _check_all_delivered_once_attempted(sink: Recording, ids: list[int], dsn: str) -> None:
    assert sink.ids() == set(ids)  # nothing lost
    assert {event.attempts for event in sink.delivered} == {0}  # no attempt counted
    assert pending_count(dsn) == 0 and _dead(dsn) == 0


async def _through_a_database_outage(database_dsn: str, *, at_start: bool) -> None:
    port = int(conninfo.conninfo_to_dict(database_dsn)["port"] or 5432)
    sink, outages = Recording(None), Outages()
    with trio.fail_after(GUARD + OUTAGE):
        async with open_tcp_proxy(port) as proxy:
            config = _config(_through(proxy, database_dsn))
            before = [] if at_start else _insert(database_dsn, 50)
            if at_start:
                proxy.go_down()
            async with _relay(config, sink, outages) as handles:
                if not at_start:
                    await _until(lambda: sink.ids() == set(before), "the first events")
                    proxy.go_down()
                during = await trio.to_thread.run_sync(_insert, database_dsn, 200)
                await trio.sleep(OUTAGE)
                assert sink.ids() == set(before)
                waiting = outages.current()
                assert waiting and {o.what for o in waiting.values()} == {"database"}
                assert all("connection" in o.reason for o in waiting.values()), waiting
                proxy.come_back()
                await _until(lambda: sink.ids() == set(before + during), "every event")
                await _until(lambda: not outages.current(), "the outage to end")
                [handle] = handles
                stats = handle.statistics()
    assert (stats.restarts, stats.retried, stats.dead) == (0, 0, 0)
    _check_all_delivered_once_attempted(sink, before + during, database_dsn)


async def test_a_relay_waits_through_a_30s_database_outage_at_start(database_dsn: str) -> None:
    await _through_a_database_outage(database_dsn, at_start=True)


async def test_a_relay_waits_through_a_30s_database_outage_mid_run(database_dsn: str) -> None:
    await _through_a_database_outage(database_dsn, at_start=False)


@contextlib.contextmanager
def _removed(prefix: str) -> Iterator[None]:
    """Delete this test's streams from the shared Redis on the way out."""
    try:
        yield
    finally:
        client = redis.Redis(port=REDIS_PORT)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


async def _through_a_broker_outage(database_dsn: str, *, at_start: bool) -> None:
    if not redis_answers():
        pytest.skip(f"no Redis answers on 127.0.0.1:{REDIS_PORT}: no broker to cut")
    outages = Outages()
    stream = f"relaytest:outage:{uuid.uuid4().hex}:"
    with trio.fail_after(GUARD + OUTAGE), _removed(stream):
        async with open_tcp_proxy(REDIS_PORT) as proxy:
            url = f"redis://127.0.0.1:{proxy.port}/0?stream={stream}{{topic}}"
            sink = Recording(open_sink(url, SinkOptions(timeout=2.0)))
            before = [] if at_start else await trio.to_thread.run_sync(_insert, database_dsn, 50)
            if at_start:
                proxy.go_down()
            async with _relay(_config(database_dsn), sink, outages) as handles:
                if not at_start:
                    await _until(lambda: sink.ids() == set(before), "the first events")
                    proxy.go_down()
                during = await trio.to_thread.run_sync(_insert, database_dsn, 200)
                await trio.sleep(OUTAGE)
                assert sink.ids() == set(before)
                assert outages.current()["sink"].what == "sink"
                proxy.come_back()
                await _until(lambda: sink.ids() == set(before + during), "every event")
                await _until(lambda: not outages.current(), "the outage to end")
                await _until(lambda: bool(handles), "the relay to have started")
                stats = handles[0].statistics()
    assert (stats.restarts, stats.retried, stats.dead) == (0, 0, 0)
    _check_all_delivered_once_attempted(sink, before + during, database_dsn)


async def test_a_relay_waits_through_a_30s_broker_outage_at_start(database_dsn: str) -> None:
    await _through_a_broker_outage(database_dsn, at_start=True)


async def test_a_relay_waits_through_a_30s_broker_outage_mid_run(database_dsn: str) -> None:
    await _through_a_broker_outage(database_dsn, at_start=False)
