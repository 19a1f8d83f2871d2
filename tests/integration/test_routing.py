"""Routing by topic against a real PostgreSQL server and two real destinations (HTTP receivers
on 127.0.0.1, and the NATS server on 127.0.0.1:4222 where it answers), on the real clock."""

from __future__ import annotations

import functools
import json
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from relay import Backoff, Config, open_relay
from relay.aio import aio_as_trio
from relay.ports import Retry
from relay.postgres import open_postgres_outbox
from relay.postgres.admin import status
from relay.sinks import WebhookSink
from relay.sinks.routing import Route, RoutingSink

from ..conftest import pending_count
from .nats_streams import NATS_PORT, Stream, delete_stream, nats_answers, nats_client
from .test_webhook import Request, Server

GUARD = 60  # seconds any one test may take before it counts as hung
FAST = Backoff(base=0.05, cap=0.2, jitter=0.0)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 go straight there, whatever proxy the environment names."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


async def start_server(nursery: trio.Nursery, path: str) -> Server:
    server = Server()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/{path}"
    return server


@pytest.fixture
async def orders(nursery: trio.Nursery) -> Server:
    return await start_server(nursery, "orders")


@pytest.fixture
async def rest(nursery: trio.Nursery) -> Server:
    return await start_server(nursery, "rest")


def insert(dsn: str, topics_and_keys: list[tuple[str, str | None]]) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [
            conn.execute(
                "INSERT INTO relay.outbox (topic, key, payload) VALUES (%s, %s, %s) RETURNING id",
                [topic, key, json.dumps({"n": n})],
            ).fetchone()[0]  # type: ignore[index]
            for n, (topic, key) in enumerate(topics_and_keys)
        ]


def rows(dsn: str) -> list[tuple[int, str, int, str | None]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, topic, attempts, last_error FROM relay.outbox ORDER BY id"
        ).fetchall()


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (a server's list or a database: nothing to signal)
        await trio.sleep(0.05)


def by_key(received: list[Request]) -> dict[str | None, list[int]]:
    keys: dict[str | None, list[int]] = {}
    for request in received:
        keys.setdefault(request.key, []).append(request.event_id)
    return keys


async def test_a_deferred_event_holds_its_key_and_keeps_its_attempts_in_postgres(
    relay_config: Config,
) -> None:
    """What `settle(defer=...)` leaves in the table, and that no claim overtakes it."""
    dsn = relay_config.dsn
    (first,) = insert(dsn, [("orders.new", "k")])
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                reason = "route 'orders.*' unavailable: no stream"
                await batch.settle(retry={}, bury={}, defer={first: Retry(30.0, reason)})
            second, other = insert(dsn, [("orders.new", "k"), ("orders.new", "j")])
            async with outbox.claim(10) as batch:
                assert [event.id for event in batch.events] == [other]
                assert batch.next_due is not None and 29 < batch.next_due <= 30
    assert rows(dsn) == [
        (first, "orders.new", 0, reason),
        (second, "orders.new", 0, None),
        (other, "orders.new", 0, None),
    ]
    found = status(relay_config)  # counted and listed with the retries
    assert found.retrying == 1
    assert [(e.id, e.attempts, e.last_error) for e in found.retrying_events] == [(first, 0, reason)]


async def test_a_failing_route_costs_only_its_own_events_and_keys_keep_their_order(
    relay_config: Config, orders: Server, rest: Server
) -> None:
    """Orders' receiver answers 500 to its first 6 requests: those events are retried (attempts
    counted, the webhook's own rule) while every other event reaches the other receiver."""
    answered = 0

    async def flaky(request: Request) -> int:
        nonlocal answered
        answered += 1
        return 500 if answered <= 6 else 200

    orders.respond = flaky
    written = [(f"orders.{n % 2}", f"o{n % 3}") for n in range(15)]
    written += [(f"users.{n}", f"u{n % 4}") for n in range(15)]
    ids = await trio.to_thread.run_sync(insert, relay_config.dsn, written)
    sink = RoutingSink(
        [
            Route.create("orders.*", WebhookSink(orders.url), orders.url),
            Route.create(">", WebhookSink(rest.url), rest.url),
        ]
    )
    config = Config(dsn=relay_config.dsn, retry_backoff=FAST, poll_interval=0.2, batch_size=10)
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            await wait_until(lambda: handle.statistics().delivered == 30)
    assert sorted(r.event_id for r in rest.received) == ids[15:]
    assert len(rest.received) == 15  # never held up, never sent twice
    delivered_orders = [r for r in orders.received[6:]]
    assert sorted(r.event_id for r in delivered_orders) == ids[:15]
    for key, key_ids in by_key(delivered_orders).items():
        assert key_ids == sorted(key_ids), f"key {key} out of order"
    for key, key_ids in by_key(rest.received).items():
        assert key_ids == sorted(key_ids), f"key {key} out of order"
    (orders_route, rest_route) = sink.statistics()
    # Failed: the 6 answered 500, and the later events of their keys the sink then held back.
    assert orders_route.failed >= 6
    assert orders_route.delivered == 15
    assert (rest_route.failed, rest_route.delivered) == (0, 15)
    assert handle.statistics().retried == 6


async def test_a_key_across_two_routes_is_delivered_once_each_in_key_order(
    relay_config: Config, orders: Server, rest: Server
) -> None:
    """Key k takes both routes; the orders receiver answers 500 to its first 4 requests. Each
    event of k reaches its receiver once, after the earlier ones of k (before, users.new went out
    again on every retry of orders.new), and the held ones count no attempt."""
    accepted: list[int] = []
    answered = 0

    async def flaky(request: Request) -> int:
        nonlocal answered
        answered += 1
        if answered <= 4:
            return 500
        accepted.append(request.event_id)
        return 200

    async def fine(request: Request) -> int:
        accepted.append(request.event_id)
        return 200

    orders.respond, rest.respond = flaky, fine
    written = [("orders.new", "k"), ("users.new", "k"), ("orders.paid", "k"), ("users.seen", "k")]
    ids = await trio.to_thread.run_sync(insert, relay_config.dsn, [*written, ("users.x", "j")])
    sink = RoutingSink(
        [
            Route.create("orders.*", WebhookSink(orders.url), orders.url),
            Route.create(">", WebhookSink(rest.url), rest.url),
        ]
    )
    config = Config(dsn=relay_config.dsn, retry_backoff=FAST, poll_interval=30)
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            await wait_until(lambda: handle.statistics().delivered == 5)
            stats = handle.statistics()
    assert [id for id in accepted if id != ids[4]] == ids[:4]  # key k in order, each once
    assert sorted(r.event_id for r in rest.received) == [ids[1], ids[3], ids[4]]
    assert len(orders.received) == 4 + 2  # the 4 answered 500, then each orders event once
    assert (stats.retried, stats.dead) == (4, 0)
    assert pending_count(relay_config.dsn) == 0


@pytest.mark.skipif(not nats_answers(), reason=f"no NATS server answers on :{NATS_PORT}")
async def test_a_route_down_holds_back_only_its_events_until_it_recovers(
    relay_config: Config, rest: Server
) -> None:
    """NATS with no stream for the orders route is a destination down: its events wait untouched
    (attempts 0), later events of their keys behind them, while the catch-all delivers; once the
    stream exists they all arrive, each key in order."""
    from relay.sinks.nats_jetstream import JetStreamSink

    unique = uuid.uuid4().hex[:12]
    stream = Stream(name=f"relaytest_{unique}", prefix=f"relaytest.{unique}")
    dsn = relay_config.dsn
    first = await trio.to_thread.run_sync(
        insert, dsn, [(f"orders.{n % 2}", f"k{n % 3}") for n in range(9)] + [("users", "u")] * 5
    )
    nats_url = f"nats://127.0.0.1:{NATS_PORT}?subject={stream.prefix}.{{topic}}"
    sink = RoutingSink(
        [
            Route.create("orders.*", JetStreamSink(nats_url), nats_url),
            Route.create(">", WebhookSink(rest.url), rest.url),
        ],
        outage_backoff=FAST,
    )
    config = Config(
        dsn=dsn, outage_backoff=FAST, retry_backoff=FAST, poll_interval=0.2, max_attempts=2
    )
    try:
        with trio.fail_after(GUARD):
            async with open_relay(config, sink) as handle:
                await wait_until(lambda: len(rest.received) == 5)
                later = await trio.to_thread.run_sync(
                    insert, dsn, [(f"orders.{n % 2}", f"k{n % 3}") for n in range(6)]
                )
                await wait_until(lambda: sink.statistics()[0].deferred >= 15)
                waiting = await trio.to_thread.run_sync(rows, dsn)
                assert {(attempts, topic[:6]) for _, topic, attempts, _ in waiting} == {
                    (0, "orders")
                }
                assert len(waiting) == 15
                assert all(
                    "route 'orders.*' unavailable" in (error or "")
                    for *_, error in waiting
                    if error is not None
                )
                assert not sink.statistics()[0].up
                found = await trio.to_thread.run_sync(status, config)
                assert found.retrying_events  # `relay status` lists them with the retries
                assert {e.last_error.split(":")[0] for e in found.retrying_events} == {
                    "route 'orders.*' unavailable"
                }
                async with nats_client() as client:
                    await aio_as_trio(client.jetstream().add_stream)(
                        name=stream.name, subjects=[f"{stream.prefix}.>"]
                    )
                await wait_until(lambda: pending_count(dsn) == 0)
                stats = handle.statistics()
            stored = await stream.read()
    finally:
        await delete_stream(stream)
    assert sorted(m.id for m in stored) == sorted(first[:9] + later)
    keys: dict[str, list[int]] = {}
    for message in stored:
        keys.setdefault(message.headers["Relay-Key"], []).append(message.id)
    for key, key_ids in keys.items():
        assert key_ids == sorted(key_ids), f"key {key} out of order"
    assert (stats.retried, stats.dead) == (0, 0)
    assert sink.statistics()[0].up
    assert len(rest.received) == 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_relay_run_routes_and_shows_each_route_in_metrics_and_status(
    database_dsn: str, orders: Server, rest: Server, tmp_path: Path
) -> None:
    """The command a user copies: routes in a TOML file, the catch-all as --sink; a password, a
    signature in the query and a token in the path of a route's URL show nowhere: a route shows
    as its pattern and `scheme://host:port`."""
    ids = await trio.to_thread.run_sync(
        insert, database_dsn, [("orders.new", "o1"), ("users.new", "u1"), ("orders.paid", "o1")]
    )
    secret_url = orders.url.replace("http://", "http://relay:hunter2@") + "?sig=S1GN4TURE"
    origin = orders.url.removesuffix("/orders")  # the path stands for a token in it
    config_file = tmp_path / "relay.toml"
    config_file.write_text(f'route = ["orders.*={secret_url}"]\nsink = "{rest.url}"\n')
    port = free_port()
    command = [sys.executable, "-m", "relay.cli"]
    with (tmp_path / "relay.err").open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [
                *command,
                "run",
                "--dsn",
                database_dsn,
                "--config",
                str(config_file),
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            stdout=stderr,
            stderr=stderr,
        )
    try:
        with trio.fail_after(GUARD):
            await wait_until(lambda: len(orders.received) + len(rest.received) == 3)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                # Another process: nothing to signal us.
                while "relay_route_delivered_total" not in (text := await metrics(http)):  # noqa: ASYNC110
                    await trio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(GUARD):
            code = await process.wait()
    log = (tmp_path / "relay.err").read_text()
    assert code == 0, log
    for secret in ("hunter2", "S1GN4TURE", "/orders"):
        assert secret not in log and secret not in text
    assert [r.event_id for r in orders.received] == [ids[0], ids[2]]
    assert [r.event_id for r in rest.received] == [ids[1]]
    assert orders.received[0].headers["authorization"].startswith("Basic ")
    delivered = {
        sample.labels["route"]: (sample.value, sample.labels["destination"])
        for family in text_string_to_metric_families(text)
        if family.name == "relay_route_delivered"
        for sample in family.samples
    }
    assert delivered == {
        "orders.*": (2.0, origin),
        ">": (1.0, rest.url.removesuffix("/rest")),
    }
    assert "relay_route_up{" in text
    await trio.to_thread.run_sync(insert, database_dsn, [("orders.late", None)])
    status = await trio.run_process(
        [*command, "status", "--dsn", database_dsn, "--config", str(config_file), "--json"],
        capture_stdout=True,
        capture_stderr=True,
    )
    document = json.loads(status.stdout)
    assert document["routes"] == [
        {
            "route": "orders.*",
            "destination": origin,
            "pending": 1,
            "retrying": 0,
            "dead": 0,
        },
        {
            "route": ">",
            "destination": rest.url.removesuffix("/rest"),
            "pending": 0,
            "retrying": 0,
            "dead": 0,
        },
    ]
    shown = await trio.run_process(
        [*command, "status", "--dsn", database_dsn, "--config", str(config_file)],
        capture_stdout=True,
        capture_stderr=True,
    )
    for secret in (b"hunter2", b"S1GN4TURE", b"/orders"):
        assert secret not in shown.stdout + shown.stderr + status.stdout + status.stderr
    assert b"orders.*" in shown.stdout


async def metrics(http: httpx.AsyncClient) -> str:
    try:
        return (await http.get("/metrics")).text
    except httpx.TransportError:
        return ""  # not serving yet


async def test_relay_run_refuses_routes_without_a_catch_all(database_dsn: str) -> None:
    secret = "nats://relay:hunter2@127.0.0.1:4222?subject=x.{topic}"
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "relay.cli",
            "run",
            "--dsn",
            database_dsn,
            "--route",
            f"orders.*={secret}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert b"no catch-all" in result.stderr
    assert b"hunter2" not in result.stderr + result.stdout


@pytest.fixture
async def nursery_unused() -> AsyncIterator[None]:
    yield
