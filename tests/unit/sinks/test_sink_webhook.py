"""The webhook sink against an in-memory httpx transport: requests, outcomes, order, concurrency."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Awaitable, Callable, Sequence

import certifi
import httpx
import pytest
import trio

from relay import ConfigError, OutboxEvent, PartialDelivery
from relay.sinks import SinkOptions, WebhookSink, encode_event, verify_signature

URL = "https://hooks.example.com/relay"
NOW = 1_700_000_000.75

Responder = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def answer(status: int, body: bytes = b"", **headers: str) -> Responder:
    async def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    return respond


class Endpoint:
    """Records every request, in arrival order, and answers through `respond`."""

    def __init__(self, respond: Responder = ok) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    @property
    def ids(self) -> list[int]:
        return [int(request.headers["Idempotency-Key"]) for request in self.requests]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.respond(request)

    def sink(self, options: SinkOptions | None = None) -> WebhookSink:
        return WebhookSink(
            URL,
            options or SinkOptions(),
            clock=lambda: NOW,
            transport=httpx.MockTransport(self),
        )


def ev(id: int, key: str | None = None) -> OutboxEvent:
    return OutboxEvent(id=id, topic="orders", key=key, payload_json=b'{"n": %d}' % id)


async def deliver(sink: WebhookSink, events: Sequence[OutboxEvent]) -> None:
    async with sink:
        await sink.deliver(events)


async def test_posts_each_event_as_json_with_its_id_and_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(json, "loads", None)  # any decoding of a payload fails the test
    endpoint = Endpoint()
    options = SinkOptions(secret="s3cret", headers={"Authorization": "Bearer t"})
    event = OutboxEvent(id=42, topic="orders", key="o-1", payload_json=b'{ "spaced" :  1 }')
    await deliver(endpoint.sink(options), [event])

    (request,) = endpoint.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.content == encode_event(event)
    assert b'"payload":{ "spaced" :  1 },' in request.content
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "42"
    assert request.headers["Authorization"] == "Bearer t"
    assert request.headers["User-Agent"] == "relay-webhook"
    signature = request.headers["Relay-Signature"]
    assert signature.startswith("t=1700000000,v1=")
    assert verify_signature("s3cret", signature, request.content, now=NOW)


async def test_no_secret_no_signature() -> None:
    endpoint = Endpoint()
    await deliver(endpoint.sink(), [ev(1)])
    assert "Relay-Signature" not in endpoint.requests[0].headers


async def test_an_extra_header_may_replace_the_user_agent() -> None:
    endpoint = Endpoint()
    await deliver(endpoint.sink(SinkOptions(headers={"user-agent": "mine"})), [ev(1)])
    assert endpoint.requests[0].headers.get_list("User-Agent") == ["mine"]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
async def test_a_2xx_answer_is_delivered(status: int) -> None:
    await deliver(Endpoint(answer(status)).sink(), [ev(1), ev(2, "k")])


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (500, False),
        (502, False),
        (503, False),
        (408, False),
        (429, False),
        (302, False),
        (400, True),
        (401, True),
        (404, True),
        (410, True),
        (422, True),
    ],
)
async def test_an_error_answer_fails_the_event(status: int, permanent: bool) -> None:
    with pytest.raises(PartialDelivery) as caught:
        await deliver(Endpoint(answer(status, b"nope")).sink(), [ev(1)])
    assert caught.value.failures == {1: f"HTTP {status}: nope"}
    assert caught.value.permanent == ({1} if permanent else set())


async def test_the_reason_holds_the_start_of_the_body_and_retry_after() -> None:
    respond = answer(503, b"  busy \n" + b"x" * 500, **{"Retry-After": "30"})
    with pytest.raises(PartialDelivery) as caught:
        await deliver(Endpoint(respond).sink(), [ev(1)])
    reason = caught.value.failures[1]
    assert reason == "HTTP 503: busy " + "x" * 192 + " (Retry-After: 30)"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("refused"), "ConnectError: refused"),
        (httpx.RemoteProtocolError(""), "RemoteProtocolError"),
        (httpx.ReadTimeout("slow"), "no answer within 10s (ReadTimeout)"),
        (httpx.ConnectTimeout("slow"), "no answer within 10s (ConnectTimeout)"),
    ],
)
async def test_transport_errors_and_timeouts_are_retryable(
    error: httpx.TransportError, reason: str
) -> None:
    async def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(PartialDelivery) as caught:
        await deliver(Endpoint(fail).sink(), [ev(1)])
    assert caught.value.failures == {1: reason}
    assert caught.value.permanent == set()


async def test_a_failure_holds_back_the_later_events_of_its_key_only() -> None:
    async def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400 if request.headers["Idempotency-Key"] in ("2", "6") else 200)

    endpoint = Endpoint(respond)
    events = [ev(1, "a"), ev(2, "a"), ev(3, "b"), ev(4, "a"), ev(5, "a"), ev(6), ev(7)]
    with pytest.raises(PartialDelivery) as caught:
        await deliver(endpoint.sink(), events)
    assert sorted(endpoint.ids) == [1, 2, 3, 6, 7]
    assert caught.value.failures == {
        2: "HTTP 400",
        4: "held behind event 2",
        5: "held behind event 2",
        6: "HTTP 400",
    }
    assert caught.value.permanent == {2, 6}


def slow(log: list[tuple[float, str, int]]) -> Responder:
    """Answers 200 after one (virtual) second, logging when each request started."""

    async def respond(request: httpx.Request) -> httpx.Response:
        event = json.loads(request.content)
        log.append((trio.current_time(), event["key"], event["id"]))
        await trio.sleep(1)
        return httpx.Response(200)

    return respond


async def test_keys_run_concurrently_and_each_key_in_order(autojump_clock: trio.abc.Clock) -> None:
    log: list[tuple[float, str, int]] = []
    events = [ev(1, "a"), ev(2, "b"), ev(3, "a"), ev(4, "c"), ev(5, "b"), ev(6, "a")]
    start = trio.current_time()
    await deliver(Endpoint(slow(log)).sink(), events)
    assert trio.current_time() - start == 3  # key a's three events, one after the other
    assert sorted((t - start, key, id) for t, key, id in log) == [
        (0, "a", 1),
        (0, "b", 2),
        (0, "c", 4),
        (1, "a", 3),
        (1, "b", 5),
        (2, "a", 6),
    ]


async def test_max_concurrency_bounds_requests_in_flight(autojump_clock: trio.abc.Clock) -> None:
    log: list[tuple[float, str, int]] = []
    events = [ev(id, f"k{id}") for id in range(1, 6)]
    start = trio.current_time()
    await deliver(Endpoint(slow(log)).sink(SinkOptions(max_concurrency=2)), events)
    assert trio.current_time() - start == 3
    # Which keys go first is up to trio's scheduler; two at a time is not.
    assert sorted(t - start for t, _, _ in log) == [0, 0, 1, 1, 2]


async def test_keyless_events_are_independent(autojump_clock: trio.abc.Clock) -> None:
    log: list[tuple[float, str, int]] = []
    start = trio.current_time()
    await deliver(Endpoint(slow(log)).sink(), [ev(id) for id in range(1, 5)])
    assert trio.current_time() - start == 1


async def test_delivers_without_async_with_on_a_client_of_its_own() -> None:
    endpoint = Endpoint()
    await endpoint.sink().deliver([ev(1), ev(2)])
    assert sorted(endpoint.ids) == [1, 2]


async def test_an_empty_batch_sends_nothing() -> None:
    endpoint = Endpoint()
    await deliver(endpoint.sink(), [])
    assert endpoint.requests == []


async def test_the_sink_can_be_entered_again_but_not_twice_at_once() -> None:
    endpoint = Endpoint()
    sink = endpoint.sink()
    async with sink:
        with pytest.raises(RuntimeError, match="already open"):
            await sink.__aenter__()
        await sink.deliver([ev(1)])
    async with sink:  # a restarted drainer enters it again
        await sink.deliver([ev(2)])
    assert endpoint.ids == [1, 2]


async def test_a_huge_error_body_is_cut_short() -> None:
    endpoint = Endpoint(answer(500, b"e" * 1_000_000))
    with pytest.raises(PartialDelivery) as caught:
        await deliver(endpoint.sink(), [ev(1)])
    assert caught.value.failures == {1: "HTTP 500: " + "e" * 200}


def test_a_ca_file_that_cannot_be_loaded_is_a_config_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    for path in (tmp_path / "missing.pem", tmp_path / "bad.pem"):
        with pytest.raises(ConfigError) as caught:
            WebhookSink(URL, SinkOptions(ca_file=str(path)))
        assert caught.value.field == "sink.ca_file"


def test_a_ca_file_is_loaded_when_the_sink_is_made() -> None:
    WebhookSink(URL, SinkOptions(ca_file=certifi.where()))
    WebhookSink(URL, SinkOptions(ca_file="/ignored/without/verification", verify_tls=False))


async def test_topic_in_the_url_path_is_each_events_topic_as_one_encoded_segment() -> None:
    """Before: `{topic}` was sent as it stood, to `/hooks/%7Btopic%7D`."""
    endpoint = Endpoint()
    sink = WebhookSink(
        "https://hooks.example.com/hooks/{topic}/in",
        transport=httpx.MockTransport(endpoint),
    )
    topics = ["orders.created", "a/b c", "..", "café?#"]
    events = [
        OutboxEvent(id=n, topic=topic, key="k", payload_json=b"{}")
        for n, topic in enumerate(topics, 1)
    ]
    await deliver(sink, events)
    assert [request.url.raw_path for request in endpoint.requests] == [
        b"/hooks/orders.created/in",
        b"/hooks/a%2Fb%20c/in",
        b"/hooks/%2E%2E/in",
        b"/hooks/caf%C3%A9%3F%23/in",
    ]


async def test_an_empty_topic_cannot_fill_the_url_and_fails_permanently() -> None:
    endpoint = Endpoint()
    sink = WebhookSink("https://h.example/{topic}", transport=httpx.MockTransport(endpoint))
    event = OutboxEvent(id=1, topic="", key=None, payload_json=b"{}")
    with pytest.raises(PartialDelivery) as caught:
        await deliver(sink, [event])
    assert caught.value.permanent == {1}
    assert endpoint.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://h.example/hooks/{key}", "unknown placeholder '{key}'"),
        ("https://h.example/hooks/{Topic}", "unknown placeholder '{Topic}'"),
        ("https://h.example/hooks/{topic", "unknown placeholder '{'"),
        ("https://h.example/hooks?t={topic}", "{topic} may only be in the webhook URL's path"),
        ("https://{topic}.example/hooks", "{topic} may only be in the webhook URL's path"),
    ],
)
def test_any_other_placeholder_is_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSink(url)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_braces_in_a_password_are_no_placeholder() -> None:
    WebhookSink("https://user:p{w}d@h.example/hooks/{topic}")


@pytest.mark.parametrize("delimiter", ["/", "?", "#"])
def test_a_url_parser_error_shows_no_piece_of_the_password(delimiter: str) -> None:
    """A password `ab/cdefgh` makes the parser read `ab` as a port and quote it."""
    with pytest.raises(ConfigError) as caught:
        WebhookSink(f"https://u:ab{delimiter}cdefgh@127.0.0.1:1/hook")
    assert "'ab'" not in str(caught.value) and "cdefgh" not in str(caught.value)
