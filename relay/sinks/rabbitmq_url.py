"""What an `amqp://` sink URL says, checked once: the broker, the exchange, the routing key.

See `relay.sinks.rabbitmq` for the URL's parameters and what the sink does with them.
"""

from __future__ import annotations

import string
import urllib.parse

import attrs

from ..errors import ConfigError
from ..ports import OutboxEvent
from ..secrets import mask_quoted, mask_url
from .urls import parameters

DEFAULT_EXCHANGE = "relay"
DEFAULT_ROUTING_KEY = "{topic}"
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
SHORTSTR_BYTES = 255  # the longest exchange name or routing key AMQP carries
_PARAMETERS = ("exchange", "declare", "routing_key", "max_message_size")


def redact(url: str) -> str:
    """`url` masked as `relay.secrets` masks a URL, or `<invalid URL>` when it cannot be split."""
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return mask_url(url)


@attrs.frozen
class AmqpTarget:
    """What a sink URL says, parsed and checked (see the module's docstring)."""

    tls: bool
    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    vhost: str
    exchange: str
    declare: str | None
    routing_key: str
    max_message_size: int

    @property
    def where(self) -> str:
        """The broker and vhost, with no user information, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"amqp{'s' if self.tls else ''}://{host}:{self.port}/{vhost}"

    def route(self, event: OutboxEvent) -> str:
        """The routing key of `event`."""
        if self.routing_key == DEFAULT_ROUTING_KEY:
            return event.topic
        return self.routing_key.format(topic=event.topic, key=event.key or "")


def parse_url(url: str) -> AmqpTarget:
    """The target an `amqp://` or `amqps://` sink URL names.

    Raises:
        ConfigError: (field "sink") the URL is malformed or a query parameter is unknown, repeated
            or invalid. The message never holds the password.
    """

    def bad(reason: str) -> ConfigError:
        return ConfigError("sink", f"{reason} in {redact(url)!r}")

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            "sink", f"not a valid URL: {redact(url)!r} ({mask_quoted(str(exc))})"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise bad("expected an amqp:// or amqps:// URL")
    if any(c.isspace() for c in url) or not parts.hostname:
        raise bad("expected a host and no spaces")
    if parts.fragment:
        raise bad("a fragment (#...) has no meaning")
    try:
        query = parameters(parts.query, _PARAMETERS)
    except ValueError as exc:
        raise bad(str(exc)) from None
    exchange = query.get("exchange", DEFAULT_EXCHANGE)
    if len(exchange.encode()) > SHORTSTR_BYTES:
        raise bad(f"an exchange name is at most {SHORTSTR_BYTES} bytes")
    declare = query.get("declare")
    if declare is not None:
        if declare not in EXCHANGE_TYPES:
            raise bad(f"declare must be one of {', '.join(EXCHANGE_TYPES)}, got {declare!r}")
        if exchange == "" or exchange.startswith("amq."):
            raise bad(f"the exchange {exchange!r} is the broker's own: it cannot be declared")
    routing_key = query.get("routing_key", DEFAULT_ROUTING_KEY)
    try:
        fields = list(string.Formatter().parse(routing_key))
    except ValueError as exc:
        raise bad(f"routing_key is not a valid template ({exc})") from None
    for _, field, spec, conversion in fields:
        if field is not None and (field not in ("topic", "key") or spec or conversion):
            raise bad(f"routing_key may use only {{topic}} and {{key}}, got {{{field}}}")
    size = query.get("max_message_size", str(DEFAULT_MAX_MESSAGE_SIZE))
    if not (size.isascii() and size.isdigit() and int(size) > 0):
        raise bad(f"max_message_size must be a number of bytes > 0, got {size!r}")
    path = urllib.parse.unquote(parts.path)
    return AmqpTarget(
        tls=scheme == "amqps",
        host=parts.hostname,
        port=port or (5671 if scheme == "amqps" else 5672),
        user=urllib.parse.unquote(parts.username or "guest"),
        password=urllib.parse.unquote(parts.password or "guest"),
        vhost=path[1:] if len(path) > 1 else "/",
        exchange=exchange,
        declare=declare,
        routing_key=routing_key,
        max_message_size=int(size),
    )
