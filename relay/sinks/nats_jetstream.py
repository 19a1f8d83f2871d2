"""The NATS JetStream sink: one JetStream publish per event, deduplicated by the event's id.

URL: `nats://[user:password@]host[:port][,host[:port]...][?subject=...&stream=...&max_inflight=N]`

- hosts: tried in the order given, the first that answers is used; port 4222 by default, IPv6 in
  brackets. `user:password@` (percent-encoded) logs in with a password, a lone `token@` with a
  token. Plain TCP only, no TLS.
- `subject` (default `{topic}`): where each event is published; `{topic}` and `{key}` are replaced
  by the event's, `{{` and `}}` are literal braces.
- `stream` (default none): the stream that must store each event, a template like `subject`, sent
  as `Nats-Expected-Stream`: a subject captured by another stream fails rather than misroutes.
- `msg_id_prefix` (default empty): put before the event id in `Nats-Msg-Id`; give each outbox its
  own when several write to one stream, or one's event 7 is taken for a duplicate of another's.
- `max_inflight` (default `SinkOptions.max_concurrency`, `--sink-concurrency`): publishes awaiting
  their ack at once, across keys.

Relay creates no stream (operators own them): until one captures the subject, `deliver` raises
`SinkUnavailable` (`no JetStream stream captures subject ...`, with how to create one): the batch
is held untouched, no attempt counted, until a stream exists. See docs/design.md, "Whose fault is a
failure".

A message holds the payload's bytes as PostgreSQL sent them (never decoded), and as headers the
event's own (strings as they are, other values as compact JSON; NATS trims a value and turns line
breaks into spaces) plus `Relay-Topic`, `Relay-Key` (keyed events only), `Relay-Created-At` (ISO
8601) and `Nats-Msg-Id: <event id>`: within the stream's duplicate window (2 minutes by default)
JetStream stores one message per id and acks a repeat as a duplicate, which makes relay's
at-least-once exactly-once in the stream for retries within the window. These names and
`Nats-Expected-Stream` are relay's: an event's headers of those names (in any case) are dropped;
its other `Nats-*` headers pass through and take effect (say `Nats-TTL`). A W3C `traceparent` and
`tracestate` (in any case) are sent as `traceparent` and `tracestate` when valid, and dropped when
not (see `relay.trace_context`).

In the CloudEvents formats (`SinkOptions.format`, see `relay.sinks.cloudevents`) a message is the
NATS binding's: the payload with the attributes as `ce-*` headers and `content-type:
application/json` (binary mode), or the JSON event format with `content-type:
application/cloudevents+json` (structured mode); `Nats-Msg-Id` still deduplicates, a trace
context is still sent as `traceparent` and `tracestate`, and relay's `Relay-*` headers are left
out, as the attributes carry what they said.

Why a thread loop: the client runs on a plain asyncio loop (uvloop when installed) in a thread
the sink owns while it is entered, not on relay's trio-asyncio loop, where each of its callbacks
was a trip through trio's scheduler and the sink reached a fifth of the client's own speed (see
`relay.sinks.lifetime` and docs/brokers-performance.md).

A batch crosses into that loop once (`deliver_pipelined`): there the events of one key are
published one at a time, each after the previous one's ack, and keys and keyless events are in
flight side by side, up to `max_inflight` at once, on the one connection. The acks come back on
one inbox subscription of the sink's own (`relay.sinks.jetstream_acks`). An ack with
`duplicate: true` counts as delivered: that is the deduplication at work.

An event that can never be stored fails permanently, so it is buried at once: too big (the
client's `MaxPayloadError`, JetStream's error 10054), a topic or key that makes no valid subject or
stream name, `{key}` for a keyless event, a header name NATS refuses, headers that are no JSON
object. Any other failure is retried: a wrong expected stream, a full stream, an event still
without its ack when the batch has taken `SinkOptions.timeout`. A lost connection makes `deliver`
raise `SinkUnavailable` at once; the client never reconnects by itself (nothing is published
behind relay's back): the drainer's restart enters the sink again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import Sequence

import attrs
import nats  # first: a missing client then names the package, `nats`, not `nats.errors`
import nats.errors
import nats.js.errors
import trio
from nats.aio.client import Client

from ..errors import PartialDelivery, SinkUnavailable
from ..ports import OutboxEvent
from ..secrets import mask_url
from ..trace_context import replace_trace_headers, trace_headers_of
from .cloudevents import NATS_PREFIX, CloudEvents, Unmappable
from .jetstream_acks import Acks
from .lanes import Failure
from .lifetime import NetworkSink, close_bounded
from .nats_url import Target, Unroutable, parse_url
from .options import SinkOptions
from .pipeline import Pipeline, deliver_pipelined

logger = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
EXPECTED_STREAM_HEADER = "Nats-Expected-Stream"
TOPIC_HEADER = "Relay-Topic"
KEY_HEADER = "Relay-Key"
CREATED_AT_HEADER = "Relay-Created-At"
CONTENT_TYPE_HEADER = "content-type"  # CloudEvents formats only, as the NATS binding names it
_OWN_HEADERS = frozenset(
    name.lower()
    for name in (MSG_ID_HEADER, EXPECTED_STREAM_HEADER, TOPIC_HEADER, KEY_HEADER, CREATED_AT_HEADER)
)
_MESSAGE_TOO_BIG = 10054  # JetStream's err_code for a message over the stream's max_msg_size
_WATCH_INTERVAL = 0.05  # how often a delivery checks that the connection is still up
# After these, no publish of the batch can be acked either: stop them all.
_FATAL = (
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
)
# A connection that goes silent without closing is declared lost after about a minute.
_PING_INTERVAL = 20
_MAX_OUTSTANDING_PINGS = 2
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@attrs.frozen
class JetStreamStatistics:
    """What a sink has published since it was created.

    Attributes:
        stored: publishes JetStream acked as new messages.
        duplicates: publishes JetStream acked as duplicates of a message it held already.
        connects: connections opened.
    """

    stored: int
    duplicates: int
    connects: int


@attrs.frozen
class _Connection:
    client: Client
    acks: Acks


@attrs.define(eq=False)
class JetStreamSink(NetworkSink[_Connection]):
    """Publishes each event to JetStream: the keys side by side, each key in order.

    Entering connects to the first server that answers (see `NetworkSink` for the lifetime).

    Attributes:
        url: the `nats://` URL; see the module's documentation.
        options: its `timeout` bounds each connection attempt and the wait for a batch's acks.
    """

    url: str = attrs.field(repr=lambda url: repr(mask_url(url)))
    options: SinkOptions = attrs.field(factory=SinkOptions)
    _target: Target = attrs.field(init=False, repr=False)
    _window: int = attrs.field(init=False, repr=False)
    _counts: dict[str, int] = attrs.field(init=False, repr=False)
    _cloudevents: CloudEvents | None = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._target = parse_url(self.url)
        self._cloudevents = self.options.cloudevents
        self._window = self._target.max_inflight or self.options.max_concurrency
        self._counts = {"stored": 0, "duplicates": 0, "connects": 0}

    def statistics(self) -> JetStreamStatistics:
        """A frozen snapshot of the sink's counters."""
        return JetStreamStatistics(**self._counts)

    async def _connect(self, stack: contextlib.AsyncExitStack) -> _Connection:
        client = await self._dial()
        stack.push_async_callback(close_bounded, functools.partial(self._aio.run, _close, client))
        return _Connection(client, await self._aio.run(Acks.subscribe, client))

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Publish the events; raise `PartialDelivery` if any was not stored.

        Raises:
            PartialDelivery: some events were not stored (the others were).
            SinkUnavailable: the connection is lost; the whole batch counts as failed.
            RuntimeError: the sink was not entered.
        """
        client = self._open().client
        if not client.is_connected:
            raise SinkUnavailable(_lost_reason(client))
        failed: PartialDelivery | None = None
        unavailable: SinkUnavailable | None = None
        lost = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                # Polled: nats-py skips its closed callback when its close fails halfway (as it
                # does when the connection drops with data buffered), and the acks in flight
                # would only time out.
                nonlocal lost
                while client.is_connected:  # noqa: ASYNC110 (asyncio state: no trio event)
                    await trio.sleep(_WATCH_INTERVAL)
                lost = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                await deliver_pipelined(events, self._pipeline(self._open()), self._aio)
            except PartialDelivery as exc:
                failed = exc
            except SinkUnavailable as exc:  # kept out of the nursery, which would group it
                unavailable = exc
            nursery.cancel_scope.cancel()
        if lost or (failed is not None and not client.is_connected):
            raise SinkUnavailable(_lost_reason(client)) from failed
        if unavailable is not None:
            raise unavailable
        if failed is not None:
            raise failed

    def _pipeline(self, session: _Connection) -> Pipeline[_Message]:
        acks, counts = session.acks, self._counts

        async def publish(message: _Message) -> None:  # on asyncio
            duplicate = await acks.publish(message.subject, message.payload, message.headers)
            counts["duplicates" if duplicate else "stored"] += 1

        return Pipeline(
            self._prepare, publish, self._judge, _FATAL, self._window, self.options.timeout
        )

    async def _dial(self) -> Client:
        target, failures = self._target, []
        for server in target.servers:
            client, seen = Client(), list[Exception]()

            async def on_error(exc: Exception, seen: list[Exception] = seen) -> None:
                # In place of the client's own callback, which logs each error with a traceback:
                # relay reports the failures that matter itself.
                seen[:] = [exc]
                logger.debug("nats client: %s", _describe(exc))

            with trio.move_on_after(self.options.timeout):
                try:
                    connect = functools.partial(
                        client.connect,
                        servers=[server],
                        name="relay",
                        user=target.user,
                        password=target.password,
                        token=target.token,
                        allow_reconnect=False,
                        # Else its own loop retries a server that refuses, every 2 s, 60 times.
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0,
                        connect_timeout=math.ceil(self.options.timeout),
                        ping_interval=_PING_INTERVAL,
                        max_outstanding_pings=_MAX_OUTSTANDING_PINGS,
                        error_cb=on_error,
                    )
                    await self._aio.run(connect)
                except Exception as exc:  # whatever it is, the next server may answer
                    gave_up = isinstance(exc, nats.errors.NoServersError) and seen
                    failures.append(f"{server}: {_describe(seen[-1] if gave_up else exc)}")
                    await close_bounded(functools.partial(self._aio.run, _close, client))
                    continue
                self._counts["connects"] += 1
                return client
            failures.append(f"{server}: no answer within {self.options.timeout:g}s")
            await close_bounded(functools.partial(self._aio.run, _close, client))
        raise SinkUnavailable(f"cannot connect to NATS ({'; '.join(failures)})")

    def _prepare(self, event: OutboxEvent) -> _Message | Failure:
        target = self._target
        try:
            subject = target.subject.render(event.topic, event.key)
            stream = None if target.stream is None else target.stream.render(event.topic, event.key)
        except Unroutable as exc:
            return Failure(str(exc), permanent=True)
        if self._cloudevents is not None:
            try:
                payload, headers, content_type = self._cloudevents.message(event, NATS_PREFIX)
            except Unmappable as exc:
                return Failure(str(exc), permanent=True)
            headers.update(trace_headers_of(event.headers))
            headers[CONTENT_TYPE_HEADER] = content_type
            headers[MSG_ID_HEADER] = f"{target.msg_id_prefix}{event.id}"
        else:
            try:
                headers = _headers(event, target.msg_id_prefix)
            except (TypeError, ValueError) as exc:  # the writer's headers are no JSON object
                return Failure(f"the headers cannot be sent: {exc}", permanent=True)
            payload = event.payload_json
        if stream is not None:
            headers[EXPECTED_STREAM_HEADER] = stream
        return _Message(subject, payload, headers)

    def _judge(self, event: OutboxEvent, exc: BaseException) -> Failure | SinkUnavailable:
        target = self._target
        subject = target.subject.render(event.topic, event.key)
        if isinstance(exc, nats.js.errors.NoStreamResponseError):
            # The destination's configuration, not the event's fault: hold the batch.
            return SinkUnavailable(
                f"no JetStream stream captures subject {subject!r}: create a stream whose"
                f" subjects include it (e.g. nats stream add NAME --subjects {subject!r})"
            )
        stream = None if target.stream is None else target.stream.render(event.topic, event.key)
        return _judge(exc, subject, stream, self.options.timeout)


@attrs.frozen
class _Message:
    subject: str
    payload: bytes
    headers: dict[str, str]


def _headers(event: OutboxEvent, msg_id_prefix: str) -> dict[str, str]:
    headers = {
        name: value if isinstance(value, str) else _json(value)
        for name, value in replace_trace_headers(event.headers).items()
        if name.lower() not in _OWN_HEADERS
    }
    headers[MSG_ID_HEADER] = f"{msg_id_prefix}{event.id}"
    headers[TOPIC_HEADER] = event.topic
    if event.key is not None:
        headers[KEY_HEADER] = event.key
    headers[CREATED_AT_HEADER] = event.created_at.isoformat()
    return headers


def _judge(exc: BaseException, subject: str, stream: str | None, timeout: float) -> Failure:
    if isinstance(exc, nats.js.errors.APIError):
        expected = "" if stream is None else f" (expected stream {stream!r})"
        return Failure(
            f"JetStream refused subject {subject!r}{expected}: {exc.description}"
            f" (error {exc.err_code})",
            permanent=exc.err_code == _MESSAGE_TOO_BIG,
        )
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        return Failure(f"no ack for subject {subject!r} within {timeout:g}s")
    permanent = (
        nats.errors.MaxPayloadError | nats.errors.BadSubjectError | nats.errors.BadHeaderError
    )
    return Failure(_describe(exc), permanent=isinstance(exc, permanent))


def _lost_reason(client: Client) -> str:
    cause = f": {_describe(client.last_error)}" if client.last_error else ""
    return f"lost the connection to NATS{cause}"


def _describe(exc: object) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _close(client: Client) -> None:
    """On asyncio: close `client` (best effort: no publish is left waiting), subscriptions too."""
    with contextlib.suppress(Exception):
        await client.close()
    # nats-py (2.16) leaves the tasks of its subscriptions pending for ever when its close fails
    # halfway (see `deliver`); on a loop relay opened itself, that fails the loop's exit.
    subscriptions = getattr(client, "_subs", {})
    for subscription in list(subscriptions.values()):
        subscription._stop_processing()
    subscriptions.clear()
    await asyncio.sleep(0)  # let the cancelled tasks finish
