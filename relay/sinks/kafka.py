"""The Kafka sink: each event a message keyed by the event's key, delivered when the broker acks it.

URL: `kafka://[user:password@]host[:port][,host[:port]...][?topic=...&kafka.<setting>=...]`

- hosts: the bootstrap servers (port 9092 by default, IPv6 in brackets); the client learns the
  rest of the cluster from them. `user:password@` (percent-encoded) become `sasl.username` and
  `sasl.password` (add `kafka.security.protocol=SASL_SSL` and `kafka.sasl.mechanism=...`).
- `topic` (default `{topic}`): the Kafka topic, `{topic}` and `{key}` replaced by the event's,
  `{{` and `}}` literal braces; a name Kafka refuses (`A-Z a-z 0-9 . _ -`, 1-249) buries the event.
- `kafka.<setting>`: passed to librdkafka as it is (`kafka.linger.ms=5`,
  `kafka.compression.type=lz4`, `kafka.ssl.ca.location=...`), checked when the sink is created.
  `linger.ms` is 1 unless given (each batch waits for its acks, so lingering costs every batch).
  Relay owns `bootstrap.servers`, `acks` (all), `enable.idempotence` (true),
  `max.in.flight.requests.per.connection` (5) and `message.timeout.ms` (`SinkOptions.timeout`).

The client is confluent-kafka (librdkafka): the fastest Python client, with the idempotent
producer, so the client's own retries neither duplicate nor reorder a partition's messages, and
one key always lands in one partition in `id` order. It is synchronous and threaded in C: `deliver`
hands the whole batch to it at once and waits for the acknowledgements in trio worker threads
(`poll` with a short bound), never blocking the event loop; it needs no asyncio loop.

A message is the payload's bytes as PostgreSQL sent them (never decoded), the event's key as the
message key (none for a keyless event), and as headers the event's own (strings as they are,
other values as compact JSON) plus `Relay-Id`, `Relay-Topic` and `Relay-Created-At` (ISO 8601);
an event's own headers of those names are dropped; a W3C `traceparent` and `tracestate` (in any
case) are sent as `traceparent` and `tracestate` when valid, and dropped when not (see
`relay.trace_context`). Consumers deduplicate on `Relay-Id`: Kafka
does not across producer sessions, so a batch redelivered after a crash or an outage is stored
again.

Whose fault: a message too large or a topic Kafka refuses is the event's (buried at once; later
events of its key in the batch are still sent, since the buried one never will be). No
acknowledgement within the timeout, brokers unreachable, a topic that does not exist where
auto-creation is off, a leader election that outlasts the timeout, a refused authorization: the
destination's, so `deliver` raises `SinkUnavailable` and the whole batch waits untouched.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

import attrs
import trio
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..errors import ConfigError, PartialDelivery, SinkUnavailable
from ..ports import OutboxEvent
from ..secrets import mask, mask_url
from ..trace_context import replace_trace_headers
from .kafka_url import KafkaTarget, parse_url
from .lifetime import NetworkSink, close_bounded
from .nats_url import Unroutable
from .options import SinkOptions

logger = logging.getLogger(__name__)

ID_HEADER = "Relay-Id"
TOPIC_HEADER = "Relay-Topic"
CREATED_AT_HEADER = "Relay-Created-At"
_OWN_HEADERS = frozenset(name.lower() for name in (ID_HEADER, TOPIC_HEADER, CREATED_AT_HEADER))
# The event's own fault: the broker will never take the message as it is.
_PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.TOPIC_EXCEPTION,  # an invalid topic name
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
    }
)
_POLL_INTERVAL = 0.05  # each wait in a worker thread for acknowledgements, so cancellation is quick
_ACK_MARGIN = 1.0  # librdkafka fails a message after the timeout; trio's bound only backs it up
_MAX_IN_FLIGHT = 5  # the idempotent producer keeps a partition's order up to 5
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _ClientLogger(logging.Logger):
    """librdkafka's log lines, all at DEBUG: while a broker is down it logs each reconnection as
    an error, and relay reports the outage itself (the drainer's `SinkUnavailable`)."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        logging.getLogger(self.name).log(logging.DEBUG, msg, *args, **kwargs)


_client_logger = _ClientLogger(f"{__name__}.client")


@attrs.frozen
class KafkaStatistics:
    """What a sink has published since it was created.

    Attributes:
        acknowledged: messages the brokers acknowledged.
        connects: producers created (one per entering).
    """

    acknowledged: int
    connects: int


@attrs.define(eq=False)
class _Acks:
    """The delivery reports of one batch, filled by librdkafka's callbacks in worker threads."""

    errors: dict[int, tuple[KafkaError | None, str | None]] = attrs.field(factory=dict)

    def report(self, event_id: int, error: KafkaError | None, message: Message) -> None:
        self.errors[event_id] = (error, message.topic())  # one dict store: atomic under the GIL


@attrs.define(eq=False)
class KafkaSink(NetworkSink[Producer]):
    """Produces each event to Kafka with its key as the message key; see the module's documentation.

    Entering creates the producer and waits (at most `options.timeout`) for the cluster's metadata;
    leaving drops what was not sent and closes it.

    Attributes:
        url: the `kafka://` URL.
        options: its `timeout` bounds the wait for each batch's acknowledgements.
    """

    uses_asyncio = False
    url: str = attrs.field(repr=lambda url: repr(mask_url(url)))
    options: SinkOptions = attrs.field(factory=SinkOptions)
    _target: KafkaTarget = attrs.field(init=False, repr=False)
    _counts: dict[str, int] = attrs.field(init=False, repr=False)
    _last_error: list[str] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._target = parse_url(self.url)
        self._counts = {"acknowledged": 0, "connects": 0}
        self._last_error = []
        # The client checks its settings only when a producer is made: make one that connects
        # nowhere, so a bad setting stops `relay run` at start rather than at the first batch.
        try:
            Producer({**self._settings(), "bootstrap.servers": ""})
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError("sink", f"Kafka client settings: {self._describe(exc)}") from None

    def statistics(self) -> KafkaStatistics:
        """A frozen snapshot of the sink's counters."""
        return KafkaStatistics(**self._counts)

    def _settings(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": ",".join(self._target.servers),
            "client.id": "relay",
            # relay waits for each batch's acks: the default 5 ms would be added to every batch,
            # and 0 sends many small requests (measured: 1 ms drains 1.5x faster than 5, 3x than 0).
            "linger.ms": 1,
            **self._target.settings,
            "acks": "all",
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": _MAX_IN_FLIGHT,
            "message.timeout.ms": max(1, round(self.options.timeout * 1000)),
            "error_cb": self._on_error,
            "logger": _client_logger,
        }

    def _on_error(self, error: KafkaError) -> None:
        self._last_error[:] = [self._describe(error)]
        logger.debug("kafka client: %s", self._last_error[0])

    async def _connect(self, stack: contextlib.AsyncExitStack) -> Producer:
        producer = Producer(self._settings())
        stack.push_async_callback(close_bounded, functools.partial(_close, producer))
        try:
            await trio.to_thread.run_sync(
                functools.partial(producer.list_topics, timeout=self.options.timeout)
            )
        except KafkaException as exc:  # the stack closes the producer
            raise SinkUnavailable(f"cannot reach Kafka: {self._describe(exc)}") from None
        self._counts["connects"] += 1
        return producer

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Produce the events and wait until the brokers acknowledge them.

        Raises:
            PartialDelivery: some events can never be stored (too large, an invalid topic); they
                are all permanent failures.
            SinkUnavailable: the brokers did not acknowledge every event within the timeout, or
                refused them for a reason of their own; the whole batch counts as failed.
            RuntimeError: the sink was not entered.
        """
        producer = self._open()
        acks = _Acks()
        failures: dict[int, str] = {}
        produced = 0
        for event in events:
            try:
                topic = self._target.topic.render(event.topic, event.key)
                headers = _headers(event)
            except Unroutable as exc:
                failures[event.id] = str(exc)
                continue
            except (TypeError, ValueError) as exc:  # the writer's headers are no JSON object
                failures[event.id] = f"the headers cannot be sent: {exc}"
                continue
            while True:
                try:
                    producer.produce(
                        topic,
                        value=event.payload_json,
                        key=None if event.key is None else event.key.encode(),
                        headers=headers,
                        on_delivery=functools.partial(acks.report, event.id),
                    )
                except BufferError:  # the client's queue is full: let it send some first
                    await trio.to_thread.run_sync(producer.poll, _POLL_INTERVAL)
                    continue
                except KafkaException as exc:
                    error: KafkaError = exc.args[0]
                    if error.code() not in _PERMANENT:
                        raise SinkUnavailable(f"Kafka refused {topic!r}: {error.str()}") from None
                    failures[event.id] = f"Kafka refused {topic!r}: {error.str()}"
                else:
                    produced += 1
                break
        deadline = trio.current_time() + self.options.timeout + _ACK_MARGIN
        while len(acks.errors) < produced:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                cause = f" (last client error: {self._last_error[0]})" if self._last_error else ""
                raise SinkUnavailable(
                    f"Kafka acknowledged {len(acks.errors)} of {produced} messages within"
                    f" {self.options.timeout:g}s{cause}"
                )
            await trio.to_thread.run_sync(producer.poll, min(_POLL_INTERVAL, remaining))
        unavailable: list[str] = []
        for event_id, (failure, where) in acks.errors.items():
            if failure is None:
                self._counts["acknowledged"] += 1
            elif failure.code() in _PERMANENT:
                failures[event_id] = f"Kafka refused the message for {where!r}: {failure.str()}"
            else:  # named by topic: a missing topic (auto-creation off) times out like an outage
                unavailable.append(f"topic {where!r}: {failure.name()}: {failure.str()}")
        if unavailable:
            raise SinkUnavailable(
                f"Kafka did not take {len(unavailable)} message(s): {unavailable[0]}"
            )
        if failures:
            raise PartialDelivery(failures, permanent=failures)

    def _describe(self, exc: object) -> str:
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
        text = error.str() if isinstance(error, KafkaError) else str(error)
        return mask(text, [v for k, v in self._target.settings.items() if "password" in k])


def _headers(event: OutboxEvent) -> list[tuple[str, str | bytes | None]]:
    headers: list[tuple[str, str | bytes | None]] = [
        (name, (value if isinstance(value, str) else _json(value)).encode())
        for name, value in replace_trace_headers(event.headers).items()
        if name.lower() not in _OWN_HEADERS
    ]
    headers.append((ID_HEADER, str(event.id).encode()))
    headers.append((TOPIC_HEADER, event.topic.encode()))
    headers.append((CREATED_AT_HEADER, event.created_at.isoformat().encode()))
    return headers


async def _close(producer: Producer) -> None:
    """Drop what was not sent (the batch is held or redelivered anyway), then let the client go."""
    with contextlib.suppress(RuntimeError):  # closed already
        producer.purge()
        await trio.to_thread.run_sync(producer.flush, 0.5)
        producer.close()  # confluent-kafka >= 2.10: ends the client's threads now
