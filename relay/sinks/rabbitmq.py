"""The RabbitMQ sink: publish each event to an exchange, with publisher confirms.

    amqp[s]://[user[:password]@]host[:port][/vhost][?parameter=value&...]

- user and password default to `guest`, the port to 5672 (`amqp`) or 5671 (`amqps`, which checks
  the broker's certificate as `SinkOptions.verify_tls` and `ca_file` say); the vhost is the
  percent-decoded path without its leading `/` (an empty path and `/%2F` both mean `/`).
- `exchange` (default `relay`): where events are published. Entering the sink checks that it exists
  (a passive declare) and raises `SinkUnavailable` naming it when it does not. `exchange=` (empty)
  is the broker's default exchange, which routes to the queue named by the routing key.
- `declare` (default: none): an exchange type, `direct`, `fanout`, `topic` or `headers`: the sink
  declares the exchange, durable, on every connect. One that exists with another type or
  durability makes the broker refuse (`PRECONDITION_FAILED`), raised as `SinkUnavailable`.
- `routing_key` (default `{topic}`): a template of `{topic}` and `{key}` (empty for a keyless
  event); `{{` and `}}` are literal braces.
- `max_message_size` (default 16777216, RabbitMQ 4's default): a payload of more bytes fails
  permanently, unsent. Keep it at most the broker's own limit: a message the broker finds too big
  makes it close the channel, which fails the whole batch instead.

Each event is one message: the body is the payload's JSON bytes exactly as PostgreSQL sent them;
`content_type` `application/json`, `delivery_mode` persistent, `message_id` the event's id,
`timestamp` its `created_at` (whole seconds), `app_id` `relay`; the headers are the event's own
plus `relay-topic`, `relay-key` (void when keyless) and `relay-attempts`, which win over writer
headers of those names; a W3C `traceparent` and `tracestate` (in any case) are sent as
`traceparent` and `tracestate` when valid, and dropped when not (see `relay.trace_context`). Every
message is `mandatory`.

In the CloudEvents formats (`SinkOptions.format`, see `relay.sinks.cloudevents`) the message is
the AMQP binding's: binary mode sends the payload, `content_type` `application/json` and the
attributes as `cloudEvents_*` headers (RabbitMQ hands them to an AMQP 1.0 consumer as application
properties), structured mode the JSON event format as `application/cloudevents+json` with no
header; in both, a trace context is still sent as `traceparent` and `tracestate`, `message_id`,
`timestamp` and `app_id` are set as above, relay's `relay-*` headers not.

An event is delivered once the broker confirmed it (publisher confirms). An unroutable message
(returned: no queue bound for its routing key), a nack, or no confirm within `SinkOptions.timeout`
is a retryable failure. Headers that are no AMQP table (a JSON array included), a routing key over
255 bytes and a payload over `max_message_size` are permanent failures. A lost connection or a
channel the broker closed raises `SinkUnavailable`: the drainer retries the batch and enters the
sink again, which reconnects; the sink never reconnects by itself (no `connect_robust`), the
supervisor owns that.

Why a thread loop: the client runs on a plain asyncio loop (uvloop when installed) in a thread
the sink owns while it is entered, not on relay's trio-asyncio loop, where each of its callbacks
was a trip through trio's scheduler and the sink reached a fifth of the client's own speed (see
`relay.sinks.lifetime` and docs/brokers-performance.md).

A batch crosses into that loop once (`deliver_pipelined`): there the events of one key are
published one after the other, each once the previous one is confirmed; keys go concurrently on
the one channel, up to `SinkOptions.max_concurrency` unconfirmed messages at once.
RabbitMQ does not deduplicate: a message whose confirm was lost (a timeout, a cut connection) is
published again on retry, so consumers deduplicate on `message_id`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import Sequence

import aio_pika
import attrs
import trio
from aio_pika import exceptions as amqp
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, HeadersType
from pamqp.encode import field_table

from ..errors import ConfigError, SinkUnavailable
from ..ports import OutboxEvent
from ..secrets import find_secrets, mask, mask_url
from ..trace_context import replace_trace_headers, trace_headers_of
from .cloudevents import AMQP_PREFIX, CloudEvents, Unmappable
from .lanes import Failure
from .lifetime import NetworkSink, close_bounded
from .options import SinkOptions
from .pipeline import Pipeline, deliver_pipelined
from .rabbitmq_url import SHORTSTR_BYTES, AmqpTarget, parse_url

logger = logging.getLogger(__name__)

# What the client raises when the connection or the channel is gone (StopAsyncIteration and
# RuntimeError included): the sink must reconnect.
_LOST = (*amqp.CONNECTION_EXCEPTIONS, EOFError)
_FATAL = (amqp.ChannelClosed, *_LOST)  # no later publish on the channel can be confirmed


@attrs.frozen
class _Publish:
    message: aio_pika.Message
    routing_key: str


@attrs.frozen
class _Session:
    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange


class _ClosedOnFailure(aio_pika.Connection):
    """A connection that closes itself when connecting fails.

    Left unclosed, aio-pika's finaliser schedules its close on a loop that is not running there,
    and the coroutine is never awaited (a warning, and an error under `-W error`). The same can
    follow a close that failed half-way on a lost connection: pyproject.toml ignores that one
    warning in the tests.
    """

    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (its API)
        try:
            await super().connect(timeout)
        except BaseException:
            await self.close()
            raise


def _publish(
    event: OutboxEvent,
    body: bytes,
    headers: HeadersType,
    content_type: str,
    routing_key: str,
) -> _Publish:
    """`event` as a persistent message with `body`, `headers` and `content_type`, its id the
    message id (consumers deduplicate on it)."""
    message = aio_pika.Message(
        body,
        headers=headers,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.id),
        timestamp=event.created_at,
        app_id="relay",
    )
    return _Publish(message, routing_key)


@attrs.define(eq=False)
class RabbitMQSink(NetworkSink[_Session]):
    """Publishes each event to a RabbitMQ exchange; of one key in order, keys concurrently.

    Entering connects, opens a channel in publisher-confirm mode and checks (or declares) the
    exchange (see `NetworkSink` for the lifetime).

    Attributes:
        url: `amqp://...` or `amqps://...`, see the module's docstring for its parameters.
        options: `timeout` (seconds to connect, and to wait for each confirm), `max_concurrency`
            (unconfirmed messages at once), `verify_tls` and `ca_file` (for `amqps`).
        target: what `url` says, parsed once.
    """

    url: str = attrs.field(repr=lambda url: repr(mask_url(url)))
    options: SinkOptions = attrs.field(factory=SinkOptions)
    target: AmqpTarget = attrs.field(init=False, repr=False)
    _ssl: ssl.SSLContext | None = attrs.field(init=False, repr=False)
    _cloudevents: CloudEvents | None = attrs.field(init=False, repr=False)

    @_cloudevents.default
    def _read_format(self) -> CloudEvents | None:
        return self.options.cloudevents

    @target.default
    def _parse(self) -> AmqpTarget:
        return parse_url(self.url)

    @_ssl.default
    def _load_certificates(self) -> ssl.SSLContext | None:
        # Here rather than on connect: a bad file is a configuration error.
        if not self.target.tls:
            return None
        ca_file = self.options.ca_file
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("sink.ca_file", f"cannot load {ca_file}: {exc}") from None
        if not self.options.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self, stack: contextlib.AsyncExitStack) -> _Session:
        with trio.move_on_after(self.options.timeout) as scope:
            try:
                connection = await self._aio.run(self._dial)
                # A connection already lost may fail to close: closing is all we wanted.
                close = functools.partial(self._aio.run, connection.close)
                stack.push_async_callback(close_bounded, close, *_LOST)
                channel, exchange = await self._aio.run(self._open_channel, connection)
            except _LOST as exc:
                raise SinkUnavailable(self._cannot_connect(exc)) from None
        if scope.cancelled_caught:
            raise SinkUnavailable(
                f"cannot connect to {self.target.where}: no answer within {self.options.timeout:g}s"
            )
        logger.info("publishing to exchange %r on %s", self.target.exchange, self.target.where)
        return _Session(connection, channel, exchange)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Publish the events and wait for the broker's confirms.

        Raises:
            PartialDelivery: some events were not confirmed (a failed event holds back the later
                events of its key, which are named too); the permanent failures among them.
            SinkUnavailable: the connection or the channel is lost; reconnect by entering again.
            RuntimeError: the sink was not entered.
        """
        session = self._open()
        if session.connection.is_closed or session.channel.is_closed:
            raise SinkUnavailable(f"the connection or channel to {self.target.where} is closed")
        exchange, options = session.exchange, self.options

        async def publish(item: _Publish) -> None:  # on asyncio; the batch has one deadline
            await exchange.publish(item.message, item.routing_key, mandatory=True)

        pipeline = Pipeline(
            self._prepare, publish, self._judge, _FATAL, options.max_concurrency, options.timeout
        )
        await deliver_pipelined(events, pipeline, self._aio)

    async def _dial(self) -> AbstractConnection:
        target = self.target
        return await aio_pika.connect(
            host=target.host,
            port=target.port,
            login=target.user,
            password=target.password,
            virtualhost=target.vhost,
            ssl=target.tls,
            ssl_context=self._ssl,
            client_properties={"connection_name": "relay"},
            connection_class=_ClosedOnFailure,
        )

    async def _open_channel(
        self, connection: AbstractConnection
    ) -> tuple[AbstractChannel, AbstractExchange]:
        """On asyncio: open a channel in confirm mode, then find or declare the exchange."""
        target = self.target
        # on_return_raises: a message the broker returns as unroutable fails its publish.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        if target.declare is not None:
            exchange = await channel.declare_exchange(target.exchange, target.declare, durable=True)
        elif target.exchange == "":
            exchange = channel.default_exchange
        else:
            exchange = await channel.get_exchange(target.exchange, ensure=True)
        return channel, exchange

    def _prepare(self, event: OutboxEvent) -> _Publish | Failure:
        if self._cloudevents is not None:
            return self._prepare_cloudevent(event, self._cloudevents)
        body = event.payload_json
        routing_key = self._route(event, body)
        if isinstance(routing_key, Failure):
            return routing_key
        try:
            # Reading the headers decodes them: a writer's `[1,2]` is no object, and raises here.
            headers = {
                **replace_trace_headers(event.headers),
                "relay-topic": event.topic,
                "relay-key": event.key,
                "relay-attempts": event.attempts,
            }
            field_table(headers)  # as the client would encode them, but before anything is sent
        except (TypeError, ValueError) as exc:
            return Failure(f"the headers cannot be sent as an AMQP table: {exc}", permanent=True)
        return _publish(event, body, headers, "application/json", routing_key)

    def _route(self, event: OutboxEvent, body: bytes) -> str | Failure:
        """The routing key; or the permanent failure of a body or a key too big to send."""
        target = self.target
        if len(body) > target.max_message_size:
            return Failure(
                f"the payload is {len(body)} bytes, over max_message_size="
                f"{target.max_message_size} (raise it in the sink URL if the broker allows more)",
                permanent=True,
            )
        routing_key = target.route(event)
        if len(routing_key.encode()) > SHORTSTR_BYTES:
            return Failure(f"routing key {routing_key[:64]!r}... is over 255 bytes", permanent=True)
        return routing_key

    def _prepare_cloudevent(
        self, event: OutboxEvent, cloudevents: CloudEvents
    ) -> _Publish | Failure:
        """The CloudEvent in AMQP's binding: `cloudEvents_*` headers, which RabbitMQ hands an
        AMQP 1.0 consumer as application properties, and the content type."""
        try:
            body, headers, content_type = cloudevents.message(event, AMQP_PREFIX)
        except Unmappable as exc:
            return Failure(str(exc), permanent=True)
        routing_key = self._route(event, body)
        if isinstance(routing_key, Failure):
            return routing_key
        with_trace: HeadersType = {**headers, **trace_headers_of(event.headers)}
        return _publish(event, body, with_trace, content_type, routing_key)

    def _judge(self, event: OutboxEvent, exc: BaseException) -> Failure | SinkUnavailable:
        target = self.target
        if isinstance(exc, amqp.PublishError):
            return Failure(
                f"unroutable: no queue bound to exchange {target.exchange!r} for routing key "
                f"{target.route(event)!r}"
            )
        if isinstance(exc, amqp.DeliveryError):
            return Failure(f"the broker did not take it (nack): {self._describe(exc)}")
        if isinstance(exc, amqp.ChannelClosed):
            reason = f"the broker closed the channel: {self._describe(exc)}"
            if "max size" in str(exc):
                reason += " (set max_message_size in the sink URL to the broker's limit)"
            return SinkUnavailable(reason)
        if isinstance(exc, _LOST):
            return SinkUnavailable(f"connection to {target.where} lost: {self._describe(exc)}")
        if isinstance(exc, TimeoutError):
            return Failure(f"no confirm within {self.options.timeout:g}s")
        return Failure(self._describe(exc))

    def _cannot_connect(self, exc: BaseException) -> str:
        exchange, where = self.target.exchange, self.target.where
        if isinstance(exc, amqp.ChannelNotFoundEntity):
            return (
                f"exchange {exchange!r} does not exist on {where}: create it, or add "
                "declare=topic (or direct, fanout, headers) to the sink URL"
            )
        if isinstance(exc, amqp.ChannelClosed):  # say, declared before with another type
            return f"cannot use exchange {exchange!r} on {where}: {self._describe(exc)}"
        return f"cannot connect to {where}: {self._describe(exc)}"

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        if not text and isinstance(exc, StopAsyncIteration | EOFError):
            text = "the connection was closed"  # how the client reports a refused handshake
        # A client error may quote its URL: mask its password, but not `guest`, the default user.
        text = mask(text, find_secrets(self.url) if self.target.password != "guest" else ())
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
