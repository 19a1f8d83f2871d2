"""The options a user can give the sinks: one frozen value, validated once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import ConfigError
from .cloudevents import DEFAULT_SOURCE, FORMATS, RELAY_FORMAT, CloudEvents, check_source
from .standard_webhooks import HEADERS as STANDARD_WEBHOOKS_HEADERS
from .standard_webhooks import RELAY_SCHEME, SCHEME, SCHEMES, secret_key

# Set by the webhook sink itself on every request; an extra header must not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "idempotency-key",
        "relay-signature",
        *STANDARD_WEBHOOKS_HEADERS,
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _header_pairs(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((name, text) for name, text in items)


def _check_headers(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    for name, text in value:
        if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
            raise ConfigError("sink.headers", f"not a valid header name: {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError("sink.headers", f"{name} is set by relay itself")
        # No value in the message: extra headers often carry credentials.
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise ConfigError("sink.headers", f"the value of {name} must be one line of text")


def _check_secret(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError("sink.secret", "must be a non-empty string, or unset for no signature")


def _check_signature(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in SCHEMES:
        raise ConfigError("sink.signature", f"must be one of {', '.join(SCHEMES)}, got {value!r}")
    secret = getattr(instance, "secret", None)
    if value == SCHEME and secret is None:
        raise ConfigError("sink.signature", f"{SCHEME} signs with a secret: none is set")
    if value == SCHEME and secret is not None:
        try:
            secret_key(secret)
        except ValueError as exc:  # its message never quotes the secret
            raise ConfigError("sink.secret", str(exc)) from None


def _check_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"sink.{attribute.name}", f"must be a number > 0, got {value!r}")


def _check_positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"sink.{attribute.name}", f"must be an integer > 0, got {value!r}")


def _check_format(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in FORMATS:
        raise ConfigError("sink.format", f"must be one of {', '.join(FORMATS)}, got {value!r}")


def _check_source(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    try:
        check_source(value)
    except ValueError as exc:
        raise ConfigError("sink.cloudevents_source", f"{exc}, got {value!r}") from None


@attrs.frozen(kw_only=True)
class SinkOptions:
    """How the sinks behave; every field has a default. Each sink reads the fields that apply to it.

    Attributes:
        secret: the key that signs each webhook request (the `Relay-Signature` header, see
            `relay.sinks.webhook`); None sends no signature.
        signature: the webhook's signature scheme: `relay` (`Relay-Signature`) or
            `standard-webhooks` (`webhook-id`, `webhook-timestamp`, `webhook-signature`, with a
            `whsec_` secret; see `relay.sinks.standard_webhooks`).
        timeout: seconds each phase of one webhook request may take (connect, send, wait for the
            answer), or a broker's publish or acknowledgement; past it the event counts as failed
            and is retried.
        max_concurrency: webhook requests or broker publishes in flight at once, across keys
            (events of one key are always sent one after the other).
        headers: extra headers on every webhook request, e.g. `Authorization`; a mapping or
            (name, value) pairs. `Content-Type`, `Idempotency-Key`, `Relay-Signature` and the
            Standard Webhooks `webhook-*` headers are relay's own.
        verify_tls: check the certificate of an `https://` endpoint or a TLS broker.
        ca_file: a PEM file of the certificate authorities to trust instead of the system's.
        format: how the webhook, NATS, AMQP and Redis sinks write an event: `relay` (relay's
            own), `cloudevents` (CloudEvents binary mode) or `cloudevents-structured`; see
            `relay.sinks.cloudevents`.
        cloudevents_source: the CloudEvents `source` attribute, a URI-reference.
    """

    secret: str | None = attrs.field(default=None, validator=_check_secret, repr=False)
    signature: str = attrs.field(default=RELAY_SCHEME, validator=_check_signature)
    timeout: float = attrs.field(default=10.0, validator=_check_positive)
    max_concurrency: int = attrs.field(default=16, validator=_check_positive_int)
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_header_pairs, validator=_check_headers, repr=False
    )
    verify_tls: bool = True
    ca_file: str | None = None
    format: str = attrs.field(default=RELAY_FORMAT, validator=_check_format)
    cloudevents_source: str = attrs.field(default=DEFAULT_SOURCE, validator=_check_source)

    @property
    def cloudevents(self) -> CloudEvents | None:
        """How to write CloudEvents; None in relay's own format."""
        return CloudEvents.of(self.format, self.cloudevents_source)
