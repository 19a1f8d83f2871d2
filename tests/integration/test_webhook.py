"""The webhook sink against a real HTTP/1.1 server on 127.0.0.1 (trio + h11), on the real clock."""

from __future__ import annotations

import functools
import itertools
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import h11
import psycopg
import pytest
import trio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, enqueue, open_relay
from relay.sinks import SinkOptions, WebhookSink, encode_event, verify_signature

GUARD = 10  # seconds any one test may take before it counts as hung


@attrs.frozen
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> int:
        return int(self.headers["idempotency-key"])

    @property
    def key(self) -> str | None:
        key: str | None = json.loads(self.body)["key"]
        return key


Respond = Callable[[Request], Awaitable[int]]


async def ok(request: Request) -> int:
    return 200


@attrs.define(eq=False)
class Server:
    """A minimal HTTP/1.1 server with keep-alive; `respond` picks each answer's status."""

    respond: Respond = ok
    received: list[Request] = attrs.field(factory=list)
    connections: int = 0
    url: str = ""

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while (request := await self._read(stream, connection)) is not None:
                    self.received.append(request)
                    status = await self.respond(request)
                    body = b"boom" if status >= 300 else b""
                    headers = [("Content-Length", str(len(body)))]
                    for event in (
                        h11.Response(status_code=status, headers=headers),
                        h11.Data(data=body),
                        h11.EndOfMessage(),
                    ):
                        await stream.send_all(connection.send(event))
                    if connection.our_state is not h11.DONE:
                        return
                    connection.start_next_cycle()
            except (trio.BrokenResourceError, h11.ProtocolError):
                return

    @staticmethod
    async def _read(stream: trio.SocketStream, connection: h11.Connection) -> Request | None:
        start: h11.Request | None = None
        body = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                start = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and start is not None:
                headers = {k.decode().lower(): v.decode() for k, v in start.headers}
                return Request(start.method.decode(), start.target.decode(), headers, body)
            else:  # ConnectionClosed, PAUSED
                return None


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 go straight there, whatever proxy the environment names."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Server]:
    server = Server()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/hooks/relay"
    yield server


def ev(id: int, key: str | None = None) -> OutboxEvent:
    return OutboxEvent(id=id, topic="orders", key=key, payload_json=b'{"n": %d}' % id)


async def deliver(sink: WebhookSink, *events: OutboxEvent) -> None:
    with trio.fail_after(GUARD):
        async with sink:
            await sink.deliver(events)


async def test_posts_a_signed_event_keyed_by_its_id(server: Server) -> None:
    event = OutboxEvent(id=41, topic="orders", key="o-1", payload_json=b'{"total":  9.5}')
    await deliver(WebhookSink(server.url, SinkOptions(secret="s3cret")), event)
    (request,) = server.received
    assert (request.method, request.target) == ("POST", "/hooks/relay")
    assert request.headers["idempotency-key"] == "41"
    assert request.headers["content-type"] == "application/json"
    assert request.body == encode_event(event)
    assert json.loads(request.body)["payload"] == {"total": 9.5}
    assert verify_signature("s3cret", request.headers["relay-signature"], request.body)
    assert not verify_signature("other", request.headers["relay-signature"], request.body)


async def test_a_500_is_a_retryable_failure(server: Server) -> None:
    async def respond(request: Request) -> int:
        return 500 if request.event_id == 2 else 200

    server.respond = respond
    with pytest.raises(PartialDelivery) as caught:
        await deliver(WebhookSink(server.url), ev(1), ev(2), ev(3))
    assert caught.value.failures == {2: "HTTP 500: boom"}
    assert caught.value.permanent == frozenset()
    assert sorted(r.event_id for r in server.received) == [1, 2, 3]


async def test_a_400_is_a_permanent_failure(server: Server) -> None:
    async def respond(request: Request) -> int:
        return 400

    server.respond = respond
    with pytest.raises(PartialDelivery) as caught:
        await deliver(WebhookSink(server.url), ev(7))
    assert caught.value.failures == {7: "HTTP 400: boom"}
    assert caught.value.permanent == {7}


async def test_a_timeout_is_a_retryable_failure(server: Server) -> None:
    async def respond(request: Request) -> int:
        if request.event_id == 1:
            await trio.sleep_forever()
        return 200

    server.respond = respond
    with pytest.raises(PartialDelivery) as caught:
        await deliver(WebhookSink(server.url, SinkOptions(timeout=0.2)), ev(1), ev(2))
    assert caught.value.failures == {1: "no answer within 0.2s (ReadTimeout)"}
    assert caught.value.permanent == frozenset()


async def test_a_refused_connection_is_a_retryable_failure() -> None:
    with socket.socket() as closed:  # a port just freed: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(PartialDelivery) as caught:
        await deliver(WebhookSink(f"http://127.0.0.1:{port}/"), ev(1))
    assert caught.value.failures[1].startswith("ConnectError")
    assert caught.value.permanent == frozenset()


async def test_keys_run_concurrently_each_in_order(server: Server) -> None:
    """Key a's first request is answered only once key b's has arrived: sequential would hang."""
    b_arrived = trio.Event()
    in_flight: set[str | None] = set()
    overlaps: list[str | None] = []

    async def respond(request: Request) -> int:
        key = request.key
        if key in in_flight:
            overlaps.append(key)
        in_flight.add(key)
        if request.event_id == 1:
            await b_arrived.wait()
        if key == "b":
            b_arrived.set()
        await trio.sleep(0.01)  # leave room for a misordered request of the same key to arrive
        in_flight.discard(key)
        return 200

    server.respond = respond
    await deliver(
        WebhookSink(server.url),
        ev(1, "a"),
        ev(2, "b"),
        ev(3, "a"),
        ev(4, "b"),
        ev(5, "a"),
    )
    assert overlaps == []
    assert [r.event_id for r in server.received if r.key == "a"] == [1, 3, 5]
    assert [r.event_id for r in server.received if r.key == "b"] == [2, 4]


async def test_a_failed_event_holds_back_the_rest_of_its_key(server: Server) -> None:
    async def respond(request: Request) -> int:
        return 503 if request.event_id == 1 else 200

    server.respond = respond
    with pytest.raises(PartialDelivery) as caught:
        await deliver(WebhookSink(server.url), ev(1, "a"), ev(2, "b"), ev(3, "a"), ev(4, "a"))
    assert caught.value.failures == {
        1: "HTTP 503: boom",
        3: "held behind event 1",
        4: "held behind event 1",
    }
    assert caught.value.permanent == frozenset()
    assert sorted(r.event_id for r in server.received) == [1, 2]


async def test_connections_are_kept_alive_across_batches(server: Server) -> None:
    sink = WebhookSink(server.url, SinkOptions(max_concurrency=1))
    with trio.fail_after(GUARD):
        async with sink:
            for id in range(1, 4):
                await sink.deliver([ev(id)])
    assert [r.event_id for r in server.received] == [1, 2, 3]
    assert server.connections == 1


async def test_through_the_relay_a_500_is_retried_with_backoff_then_delivered(
    server: Server, database_dsn: str
) -> None:
    attempts_at: list[float] = []

    async def fail_twice(request: Request) -> int:
        attempts_at.append(trio.current_time())
        return 500 if len(attempts_at) <= 2 else 200

    server.respond = fail_twice
    config = Config(
        dsn=database_dsn, max_attempts=5, retry_backoff=Backoff(base=0.2, cap=1.0, jitter=0)
    )
    with psycopg.connect(database_dsn) as conn:
        enqueue(conn, "orders", {"n": 1}, key="k")
    with trio.fail_after(GUARD):
        async with open_relay(config, WebhookSink(server.url)) as handle:
            while handle.statistics().delivered < 1:  # noqa: ASYNC110 (bounded by the guard)
                await trio.sleep(0.05)
    assert len(attempts_at) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts_at)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # backoff base 0.2, doubling
    with psycopg.connect(database_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM relay.outbox").fetchone() == (0,)


async def test_through_the_relay_an_always_failing_endpoint_ends_in_outbox_dead(
    server: Server, database_dsn: str
) -> None:
    async def always_500(request: Request) -> int:
        return 500

    server.respond = always_500
    config = Config(
        dsn=database_dsn, max_attempts=3, retry_backoff=Backoff(base=0.05, cap=0.1, jitter=0)
    )
    with psycopg.connect(database_dsn) as conn:
        id = enqueue(conn, "orders", {"n": 1}, key="k")
    with trio.fail_after(GUARD):
        async with open_relay(config, WebhookSink(server.url)) as handle:
            while handle.statistics().dead < 1:  # noqa: ASYNC110 (bounded by the guard)
                await trio.sleep(0.05)
    assert len(server.received) == 3
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT id, attempts, last_error FROM relay.outbox_dead").fetchall()
    assert [(row[0], row[1]) for row in dead] == [(id, 3)]
    assert dead[0][2].startswith("HTTP 500")
