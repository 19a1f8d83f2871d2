"""The webhook in the CloudEvents formats and with Standard Webhooks signatures, through the
relay from a real PostgreSQL to an HTTP/1.1 receiver on 127.0.0.1, read back as receivers do:
the CloudEvents SDK's parser and the `standardwebhooks` package's verifier."""

from __future__ import annotations

import base64
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import trio
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from relay import Config, enqueue, open_relay
from relay.ports import Sink
from relay.sinks import SinkOptions, WebhookSink, verify_signature

from .cli_runs import assert_one_clear_line, relay
from .test_webhook import Request, Server

GUARD = 20
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET = "whsec_" + base64.b64encode(b"a key of 24 random bytes").decode()
AWKWARD = 'a "quoted" key, 100% é ✓\ttab'


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Server]:
    server = Server()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
    )
    server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hooks/{{topic}}"
    yield server


def write_events(dsn: str) -> list[int]:
    """Four events: keyed with a trace header, keyless, an awkward key, a nested payload."""
    with psycopg.connect(dsn) as conn:
        return [
            enqueue(
                conn, "orders.created", {"n": 1}, key="o-1", headers={"traceparent": TRACEPARENT}
            ),
            enqueue(conn, "orders.created", {"n": 2}),
            enqueue(conn, "orders.paid", {"n": 3, "s": 'é\n"%'}, key=AWKWARD),
            enqueue(conn, "orders.paid", [{"deep": [1, 2.5, None]}], key="o-2"),
        ]


def payload_bytes(dsn: str, ids: list[int]) -> list[bytes]:
    """The payloads as PostgreSQL sends them, before the relay takes the rows."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT payload::text FROM relay.outbox WHERE id = ANY(%s) ORDER BY id", [ids]
        ).fetchall()
    return [row[0].encode() for row in rows]


async def run_until_delivered(dsn: str, sink: Sink, count: int, guard: float = GUARD) -> None:
    """Run a relay into `sink` until it has delivered `count` events, within `guard` seconds."""
    with trio.fail_after(guard):
        async with open_relay(Config(dsn=dsn), sink) as handle:
            while handle.statistics().delivered < count:  # noqa: ASYNC110 (bounded by the guard)
                await trio.sleep(0.02)


def parse(request: Request) -> http.BaseCloudEvent:  # type: ignore[name-defined]
    return http.from_http(http.HTTPMessage(request.headers, request.body), JSONFormat())


@pytest.mark.parametrize("format", ["cloudevents", "cloudevents-structured"])
async def test_each_event_arrives_as_a_cloudevent_the_sdk_parses(
    server: Server, database_dsn: str, format: str
) -> None:
    ids = write_events(database_dsn)
    payloads = payload_bytes(database_dsn, ids)
    options = SinkOptions(format=format, cloudevents_source="/relay/shop")
    await run_until_delivered(database_dsn, WebhookSink(server.url, options), len(ids))
    received = sorted(server.received, key=lambda r: r.event_id)
    assert [r.event_id for r in received] == ids
    events = [parse(r) for r in received]
    assert [e.get_id() for e in events] == [str(i) for i in ids]
    assert {e.get_source() for e in events} == {"/relay/shop"}
    assert [e.get_type() for e in events] == ["orders.created"] * 2 + ["orders.paid"] * 2
    assert [e.get_subject() for e in events] == ["o-1", None, AWKWARD, "o-2"]
    assert [e.get_data() for e in events] == [
        {"n": 1},
        {"n": 2},
        {"n": 3, "s": 'é\n"%'},
        [{"deep": [1, 2.5, None]}],
    ]
    assert events[0].get_extension("traceparent") == TRACEPARENT
    assert all(e.get_time() is not None and e.get_time().tzinfo for e in events)  # type: ignore[union-attr]
    assert [r.target for r in received[:1]] == ["/hooks/orders.created"]
    if format == "cloudevents":
        assert received[0].headers["content-type"] == "application/json"
        assert received[0].headers["ce-traceparent"] == TRACEPARENT
        assert [r.body for r in received] == payloads  # the payload alone, byte for byte
    else:
        assert received[0].headers["content-type"].startswith("application/cloudevents+json")
        assert not any(name.startswith("ce-") for name in received[0].headers)


async def test_standard_webhooks_signatures_verify_with_the_package(
    server: Server, database_dsn: str
) -> None:
    ids = write_events(database_dsn)
    options = SinkOptions(secret=SECRET, signature="standard-webhooks", format="cloudevents")
    await run_until_delivered(database_dsn, WebhookSink(server.url, options), len(ids))
    webhook = Webhook(SECRET)
    for request in server.received:
        webhook.verify(request.body, request.headers, json_parse=False)  # raises if it fails
        assert request.headers["webhook-id"] == str(request.event_id)
        assert "relay-signature" not in request.headers
        with pytest.raises(WebhookVerificationError):
            webhook.verify(request.body + b" ", request.headers, json_parse=False)
    other = Webhook("whsec_" + base64.b64encode(b"another key").decode())
    with pytest.raises(WebhookVerificationError):
        other.verify(server.received[0].body, server.received[0].headers, json_parse=False)


async def test_the_relay_scheme_stays_the_default(server: Server, database_dsn: str) -> None:
    write_events(database_dsn)
    await run_until_delivered(database_dsn, WebhookSink(server.url, SinkOptions(secret="s")), 4)
    for request in server.received:
        assert verify_signature("s", request.headers["relay-signature"], request.body)
        assert "webhook-signature" not in request.headers


async def test_an_empty_topic_is_buried_at_once_as_no_cloudevent(
    server: Server, database_dsn: str
) -> None:
    with psycopg.connect(database_dsn) as conn:  # a foreign writer: enqueue refuses an empty topic
        conn.execute("INSERT INTO relay.outbox (topic, payload) VALUES ('', '{}')")
    sink = WebhookSink(server.url.replace("{topic}", "all"), SinkOptions(format="cloudevents"))
    with trio.fail_after(GUARD):
        async with open_relay(Config(dsn=database_dsn), sink) as handle:
            while handle.statistics().dead < 1:  # noqa: ASYNC110 (bounded by the guard)
                await trio.sleep(0.02)
    assert server.received == []
    with psycopg.connect(database_dsn) as conn:
        (reason,) = conn.execute("SELECT last_error FROM relay.outbox_dead").fetchone() or ("",)
    assert "topic is empty" in reason


def test_a_bad_standard_webhooks_secret_stops_relay_run_with_one_line(database_dsn: str) -> None:
    secret = "not-a-whsec-secret-1234"
    result = relay(
        "run", "--dsn", database_dsn, "--sink", "http://127.0.0.1:9/x",
        "--webhook-signature", "standard-webhooks", "--webhook-secret", secret,
    )  # fmt: skip
    line = assert_one_clear_line(result, secret=secret)
    # Named as the operator set it, not as the sink's option calls it (`sink.secret`).
    assert "webhook_secret: a Standard Webhooks secret starts with whsec_" in line


def test_cloudevents_on_stdout_stops_relay_run_with_one_line(database_dsn: str) -> None:
    result = relay("run", "--dsn", database_dsn, "--sink-format", "cloudevents-structured")
    line = assert_one_clear_line(result, secret="\0")
    assert "cloudevents-structured is for the webhook, NATS, AMQP and Redis sinks" in line


PLANTED = "Zq9xK7planted"
UNREACHABLE = f"postgresql://postgres:{PLANTED}@127.0.0.1:1/db?connect_timeout=2"
HOOK = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("args", "env", "file", "expected"),
    [
        (["--sink-format", "CloudEvents"], {}, "", "sink_format: must be one of"),
        ([], {"RELAY_SINK_FORMAT": ""}, "", "sink_format: must be one of"),
        ([], {}, 'sink_format = "cloudevents-binary"\n', "sink_format: must be one of"),
        ([], {}, "sink_format = 1\n", "sink_format: must be a string"),
        (["--cloudevents-source", "/a b"], {}, "", "cloudevents_source: must be a URI-reference"),
        (["--cloudevents-source", "/x " * 5000], {}, "", "cloudevents_source: must be a URI-ref"),
        ([], {"RELAY_CLOUDEVENTS_SOURCE": "/a\tb"}, "", "cloudevents_source: must be a URI-ref"),
        ([], {}, 'cloudevents_source = "/é"\n', "cloudevents_source: must be a URI-reference"),
        ([], {}, 'cloudevents_source = ""\n', "cloudevents_source: must be a non-empty"),
        (["--sink", "kafka://127.0.0.1:9092", "--sink-format", "cloudevents"], {}, "", "not kafka"),
        (["--sink", HOOK, "--webhook-signature", "standard-webhooks"], {}, "", "none is set"),
        (
            ["--sink", HOOK, "--webhook-signature", "standard-webhooks"],
            {"RELAY_WEBHOOK_SECRET": f"whsec_{PLANTED}!"},
            "",
            "whsec_ then base64",
        ),
        (
            ["--sink", HOOK],
            {"RELAY_WEBHOOK_SECRET": f"{PLANTED}=="},
            'webhook_signature = "standard-webhooks"\n',
            "starts with whsec_",
        ),
    ],
)
def test_bad_cloudevents_and_signature_options_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str, expected: str
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(file)
    result = relay("run", *args, "--config", str(config), env={"RELAY_DSN": UNREACHABLE, **env})
    line = assert_one_clear_line(result, secret=PLANTED)
    assert expected in line
    assert len(line) < 300
