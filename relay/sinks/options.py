"""The options a user can give the sinks: one frozen value, validated once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import ConfigError

# Set by the webhook sink itself on every request; an extra header must not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "host",
        "idempotency-key",
        "relay-signature",
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


def _check_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"sink.{attribute.name}", f"must be a number > 0, got {value!r}")


def _check_positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"sink.{attribute.name}", f"must be an integer > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class SinkOptions:
    """How the sinks behave; every field has a default. Each sink reads the fields that apply to it.

    Attributes:
        secret: the key that signs each webhook request (the `Relay-Signature` header, see
            `relay.sinks.webhook`); None sends no signature.
        timeout: seconds each phase of one webhook request may take (connect, send, wait for the
            answer), or a broker's publish or acknowledgement; past it the event counts as failed
            and is retried.
        max_concurrency: webhook requests or broker publishes in flight at once, across keys
            (events of one key are always sent one after the other).
        headers: extra headers on every webhook request, e.g. `Authorization`; a mapping or
            (name, value) pairs. `Content-Type`, `Idempotency-Key` and `Relay-Signature` are
            relay's own.
        verify_tls: check the certificate of an `https://` endpoint or a TLS broker.
        ca_file: a PEM file of the certificate authorities to trust instead of the system's.
    """

    secret: str | None = attrs.field(default=None, validator=_check_secret, repr=False)
    timeout: float = attrs.field(default=10.0, validator=_check_positive)
    max_concurrency: int = attrs.field(default=16, validator=_check_positive_int)
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_header_pairs, validator=_check_headers, repr=False
    )
    verify_tls: bool = True
    ca_file: str | None = None
