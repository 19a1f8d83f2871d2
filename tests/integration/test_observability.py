"""`/metrics`, `/healthz` and `/readyz` over loopback, for a relay on a real PostgreSQL server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from psycopg import conninfo, sql

from relay import Backoff, Config, ConfigError, OutboxEvent, RelayHandle, run_relay
from relay.daemon.observability import serve_observability
from relay.testing import MemoryOutbox, RecordingSink

from ..conftest import PostgresServer

GUARD = 60
LOOPBACK = ("127.0.0.1", 0)  # port 0: the kernel picks a free one, serve_observability tells it


def insert(dsn: str, count: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, payload)"
            " SELECT 'orders', jsonb_build_object('n', g) FROM generate_series(1, %s) g",
            [count],
        )


def metric(text: str, name: str) -> float:
    """The value of the unlabelled sample `name` in an exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise KeyError(name)


async def wait_until(condition: Callable[[], bool], interval: float = 0.05) -> None:
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


async def readyz_until(http: httpx.AsyncClient, status: int) -> httpx.Response:
    """Poll `/readyz` until it answers `status`: readiness is a state to sample, not an event."""
    while (response := await http.get("/readyz")).status_code != status:  # noqa: ASYNC110
        await trio.sleep(0.05)
    return response


@asynccontextmanager
async def relay_with_endpoints(
    config: Config, handler: Callable[[Sequence[OutboxEvent]], object]
) -> AsyncIterator[tuple[RelayHandle, httpx.AsyncClient]]:
    """The relay in-process on `config`, its endpoints served on loopback, and a client."""
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_relay, config, handler)
        host, port = await nursery.start(serve_observability, handle, config, LOOPBACK)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            yield handle, http
        nursery.cancel_scope.cancel()


async def test_delivered_total_counts_every_event_written_by_plain_sql(database_dsn: str) -> None:
    delivered: list[int] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        delivered.extend(event.id for event in events)

    config = Config(dsn=database_dsn, batch_size=50)
    with trio.fail_after(GUARD):
        async with relay_with_endpoints(config, handler) as (handle, http):
            await trio.to_thread.run_sync(insert, database_dsn, 120)
            await wait_until(lambda: len(delivered) == 120)
            response = await http.get("/metrics")
            stats = handle.statistics()
    assert response.status_code == 200
    text = response.text
    assert metric(text, "relay_delivered_total") == len(delivered) == 120
    assert metric(text, "relay_batches_total") == stats.batches >= 3
    assert metric(text, "relay_batch_duration_seconds_count") == stats.batches
    assert metric(text, "relay_end_to_end_lag_seconds_count") == 120
    assert metric(text, "relay_listener_connected") == 1
    assert metric(text, "relay_pending_events") == 0
    assert metric(text, "relay_oldest_pending_age_seconds") == 0
    assert 0 <= metric(text, "relay_notification_queue_usage") < 1


async def test_the_backlog_gauges_count_what_waits_in_the_outbox(database_dsn: str) -> None:
    release = trio.Event()

    async def handler(events: Sequence[OutboxEvent]) -> None:
        await release.wait()

    config = Config(dsn=database_dsn, batch_size=10)
    with trio.fail_after(GUARD):
        async with relay_with_endpoints(config, handler) as (_, http):
            await trio.to_thread.run_sync(insert, database_dsn, 25)
            await trio.sleep(0.5)
            # The claimed batch counts too: its delete is not committed.
            text = (await http.get("/metrics")).text
            release.set()
    assert metric(text, "relay_pending_events") == 25
    assert metric(text, "relay_oldest_pending_age_seconds") >= 0.5


async def test_readyz_is_503_while_the_listener_is_down_and_200_after_it_reconnects(
    database_dsn: str, postgres_server: PostgresServer
) -> None:
    counted = 0

    async def handler(events: Sequence[OutboxEvent]) -> None:
        nonlocal counted
        counted += len(events)

    name = conninfo.conninfo_to_dict(database_dsn)["dbname"]
    allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
    config = Config(
        dsn=database_dsn,
        # The listener fails to reconnect as long as connections are refused: it keeps trying.
        outage_backoff=Backoff(base=0.05, cap=0.2),
    )
    with trio.fail_after(GUARD):
        async with relay_with_endpoints(config, handler) as (handle, http):
            await readyz_until(http, 200)
            with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as admin:
                admin.execute(allow.format(sql.Identifier(name), sql.SQL("false")))
                try:
                    (listener,) = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                        " AND application_name = 'relay' AND query ILIKE 'LISTEN%%'",
                        [name],
                    ).fetchall()
                    admin.execute("SELECT pg_terminate_backend(%s)", [listener[0]])
                    await wait_until(lambda: not handle.statistics().listener_connected)
                    await trio.sleep(0.3)  # several reconnects refused meanwhile
                    down = await http.get("/readyz")
                    health = await http.get("/healthz")
                    metrics_down = (await http.get("/metrics")).text
                finally:
                    admin.execute(allow.format(sql.Identifier(name), sql.SQL("true")))
            up = await readyz_until(http, 200)
            assert handle.statistics().restarts == 0  # an outage waited out, not a crash
    assert down.status_code == 503
    assert down.text.startswith("database unavailable (")
    assert down.text.endswith(f'database "{name}" is not currently accepting connections\n')
    assert health.status_code == 200
    assert metric(metrics_down, "relay_listener_connected") == 0
    assert up.text == "ready\n"


in_memory_relay = partial(run_relay, Config(), RecordingSink(), outbox=MemoryOutbox())


async def test_a_port_in_use_is_a_config_error_naming_metrics_addr() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(in_memory_relay)
                with pytest.raises(ConfigError) as caught:
                    await nursery.start(serve_observability, handle, Config(), taken.getsockname())
                nursery.cancel_scope.cancel()
    assert caught.value.field == "metrics_addr"
    assert "cannot listen on 127.0.0.1:" in caught.value.reason


async def test_cancelling_the_nursery_stops_the_server_and_frees_the_port() -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(in_memory_relay)
            address = await nursery.start(serve_observability, handle, Config(), LOOPBACK)
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://{address[0]}:{address[1]}/healthz")
            nursery.cancel_scope.cancel()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://{address[0]}:{address[1]}/healthz")
    assert response.status_code == 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_daemon_serves_metrics_and_keeps_stdout_for_events(
    database_dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    out, err = tmp_path / "relay.out", tmp_path / "relay.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay.cli",
                "run",
                "--dsn",
                database_dsn,
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        insert(database_dsn, 30)
        deadline = time.monotonic() + GUARD
        delivered = 0.0
        while delivered < 30 and time.monotonic() < deadline:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
                if scraped.status_code == 200:  # 503 while the relay starts
                    delivered = metric(scraped.text, "relay_delivered_total")
            except httpx.ConnectError:
                pass  # not listening yet
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=GUARD)
    assert code == 0, err.read_text()
    assert delivered == 30
    lines = out.read_text().splitlines()
    assert len(lines) == 30
    assert all(json.loads(line)["topic"] == "orders" for line in lines)
    assert "Traceback" not in err.read_text()


def test_the_daemon_exits_2_naming_metrics_addr_when_the_port_is_taken(
    database_dsn: str,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay.cli",
                "run",
                "--dsn",
                database_dsn,
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            timeout=GUARD,
        )
    assert result.returncode == 2
    assert result.stdout == b""
    assert f"metrics_addr: cannot listen on 127.0.0.1:{port}" in result.stderr.decode()
    assert b"Traceback" not in result.stderr
