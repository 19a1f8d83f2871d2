"""`open_sink`: the sink a URL names."""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from ..ports import Sink
from ..secrets import find_secrets, mask
from .cloudevents import RELAY_FORMAT
from .options import SinkOptions
from .python import load_python_sink
from .stdout import StdoutSink
from .webhook import WebhookSink

_EXPECTED = (
    "stdout, http://..., https://..., nats://..., redis://..., amqp://..., kafka://... "
    "or python:package.module:callable"
)
# scheme: (module, class, extra); loaded on use, as each needs its optional client library
_BROKERS = {
    "nats": ("nats_jetstream", "JetStreamSink", "nats"),
    "redis": ("redis_streams", "RedisStreamSink", "redis"),
    "rediss": ("redis_streams", "RedisStreamSink", "redis"),
    "amqp": ("rabbitmq", "RabbitMQSink", "amqp"),
    "amqps": ("rabbitmq", "RabbitMQSink", "amqp"),
    "kafka": ("kafka", "KafkaSink", "kafka"),
}

_CLOUDEVENTS_SCHEMES = frozenset({"http", "https", "nats", "redis", "rediss", "amqp", "amqps"})


def open_sink(url: str = "stdout", options: SinkOptions | None = None) -> Sink:
    """The sink that `url` names, configured by `options`.

    - `stdout` (also the empty string): `StdoutSink`, one JSON line per event;
    - `http://...`, `https://...`: `WebhookSink`, one POST per event;
    - `nats://...`: `JetStreamSink`, see `relay.sinks.nats_jetstream`;
    - `redis://...`, `rediss://...`: `RedisStreamSink`, see `relay.sinks.redis_streams`;
    - `amqp://...`, `amqps://...`: `RabbitMQSink`, see `relay.sinks.rabbitmq`;
    - `kafka://...`: `KafkaSink`, see `relay.sinks.kafka`;
    - `python:package.module:callable`: user code, see `load_python_sink` for what it may be.

    Nothing is connected yet: a sink that holds connections opens them when the drainer enters it
    (`async with`).

    Raises:
        ConfigError: (field "sink") the scheme is unknown, the URL is malformed, or the
            `python:` target cannot be loaded. No message holds a URL's password.
    """
    options = SinkOptions() if options is None else options
    text = url.strip()
    scheme, sep, rest = text.partition(":")
    if options.format != RELAY_FORMAT and scheme.lower() not in _CLOUDEVENTS_SCHEMES:
        raise ConfigError(
            "sink.format",
            f"{options.format} is for the webhook, NATS, AMQP and Redis sinks, not"
            f" {scheme or 'stdout'}: leave the format at {RELAY_FORMAT}",
        )
    if text in ("", "stdout"):
        return StdoutSink()
    if not sep:
        raise ConfigError("sink", f"unknown sink {text!r}: expected {_EXPECTED}")
    match scheme.lower():
        case "http" | "https":
            return WebhookSink(text, options)
        case "python":
            return load_python_sink(rest)
        case broker if broker in _BROKERS:
            return _open_broker_sink(broker, text, options)
        case _:
            # Only the scheme: the rest of an unknown URL may hold a password.
            raise ConfigError("sink", f"unknown sink scheme {scheme + ':'!r}: expected {_EXPECTED}")


def _open_broker_sink(scheme: str, url: str, options: SinkOptions) -> Sink:
    module_name, class_name, extra = _BROKERS[scheme]
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ImportError as exc:
        raise ConfigError(
            "sink",
            f"{scheme}:// needs the {exc.name} package: pip install 'relay-outbox[{extra}]'",
        ) from None
    try:
        sink: Sink = getattr(module, class_name)(url, options)
    except ConfigError as exc:
        # The sink masks what it parsed; a password with an unencoded delimiter parses wrongly
        # and may show in pieces. Mask those too, at this one boundary.
        raise ConfigError(exc.field, mask(exc.reason, find_secrets(url))) from None
    return sink
