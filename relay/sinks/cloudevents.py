"""CloudEvents 1.0: the one place that says how an outbox event becomes a CloudEvent.

| CloudEvents attribute | from the event                                                        |
|-----------------------|-----------------------------------------------------------------------|
| `specversion`         | `1.0`                                                                 |
| `id`                  | `id`, in decimal                                                      |
| `source`              | `SinkOptions.cloudevents_source`, the same for every event (`/relay`) |
| `type`                | `topic` (an empty topic makes no CloudEvent: a permanent failure)     |
| `subject`             | `key`; left out when the event has none (or an empty one)             |
| `time`                | `created_at`, RFC 3339                                                |
| `datacontenttype`     | `application/json`                                                    |
| `data`                | `payload`: its JSON bytes as PostgreSQL sent them, never decoded      |
| extensions            | each header whose name is lowercase ASCII letters and digits and no   |
|                       | attribute's (`traceparent`, `tenant`); a string as it is, any other   |
|                       | value as compact JSON. Other headers are left out.                    |

The CloudEvents `(source, id)` pair is what consumers deduplicate on: give each outbox its own
source when several feed one consumer.

Binary mode puts the attributes in the protocol's headers and the payload alone in the body, as
each binding says: `ce-` headers percent-encoded for HTTP, `ce-` headers for NATS, `cloudEvents_`
headers (the AMQP binding's application properties) for AMQP. Structured mode sends one JSON
object, `application/cloudevents+json`, the payload spliced in as `data`.
"""

from __future__ import annotations

import datetime
import json
import re
import urllib.parse
from typing import Any

import attrs

from ..ports import OutboxEvent

RELAY_FORMAT = "relay"
BINARY = "cloudevents"
STRUCTURED = "cloudevents-structured"
FORMATS = (RELAY_FORMAT, BINARY, STRUCTURED)
DEFAULT_SOURCE = "/relay"
SPECVERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
HTTP_PREFIX = "ce-"
NATS_PREFIX = "ce-"
AMQP_PREFIX = "cloudEvents_"

_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
# RFC 3986's characters: a URI-reference holds nothing else (a space or a quote is percent-encoded).
_URI_REFERENCE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# The HTTP binding: printable ASCII is sent as it is, but for space, `"` and `%` (3.1.3.2).
_HTTP_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class Unmappable(ValueError):
    """The event makes no valid CloudEvent (an empty topic, headers that are no JSON object)."""


def check_source(source: str) -> str:
    """`source` if it is a URI-reference, as CloudEvents requires; else a ValueError saying why."""
    if not isinstance(source, str) or not source:
        raise ValueError("must be a non-empty URI-reference, e.g. /relay/shop")
    if _URI_REFERENCE.fullmatch(source) is None:
        raise ValueError(
            "must be a URI-reference: ASCII letters, digits and -._~:/?#[]@!$&'()*+,;=%"
            " only (percent-encode the rest)"
        )
    try:
        urllib.parse.urlsplit(source)
    except ValueError as exc:
        raise ValueError(f"is not a URI-reference ({exc})") from None
    return source


@attrs.frozen
class CloudEvents:
    """How a sink writes CloudEvents: in which mode, from which source.

    Attributes:
        structured: one JSON object per event (structured mode) rather than the payload alone
            with the attributes in headers (binary mode).
        source: the `source` attribute of every event.
    """

    structured: bool = False
    source: str = attrs.field(default=DEFAULT_SOURCE, validator=lambda _, __, v: check_source(v))

    @classmethod
    def of(cls, format: str, source: str) -> CloudEvents | None:
        """The CloudEvents a sink format names; None for relay's own format."""
        if format == RELAY_FORMAT:
            return None
        return cls(structured=format == STRUCTURED, source=source)

    def attributes(self, event: OutboxEvent) -> dict[str, str]:
        """The event's attributes but `datacontenttype`, which each binding places itself.

        Raises:
            Unmappable: the topic is empty, or the headers are no JSON object.
        """
        if not event.topic:
            raise Unmappable("the topic is empty: a CloudEvent needs a non-empty type")
        attributes = {
            "specversion": SPECVERSION,
            "id": str(event.id),
            "source": self.source,
            "type": event.topic,
        }
        if event.key:
            attributes["subject"] = event.key
        attributes["time"] = _rfc3339(event.created_at)
        try:
            headers = list(event.headers.items())
        except (TypeError, ValueError) as exc:
            raise Unmappable(f"the headers cannot be read: {exc}") from None
        for name, value in headers:
            if _EXTENSION_NAME.fullmatch(name) and name not in _ATTRIBUTES and name != "data":
                attributes[name] = value if isinstance(value, str) else _json_text(value)
        return attributes

    def structured_json(self, event: OutboxEvent) -> bytes:
        """The event in the JSON event format, the payload's bytes spliced in as `data`."""
        attributes = self.attributes(event)
        attributes["datacontenttype"] = DATA_CONTENT_TYPE
        head = _encode(attributes).encode()
        return b'%b,"data":%b}' % (head[:-1], event.payload_json)

    def http_headers(self, event: OutboxEvent) -> dict[str, str]:
        """Binary mode's HTTP headers: `ce-*`, percent-encoded as the HTTP binding says, and
        `Content-Type`."""
        headers = {
            HTTP_PREFIX + name: urllib.parse.quote(value, safe=_HTTP_SAFE)
            for name, value in self.attributes(event).items()
        }
        headers["Content-Type"] = DATA_CONTENT_TYPE
        return headers

    def message(self, event: OutboxEvent, prefix: str) -> tuple[bytes, dict[str, str], str]:
        """A broker message's body, headers and content type, in this mode.

        Binary: the payload, each attribute as a header under `prefix` (`datacontenttype` is
        the returned content type, which the broker carries its own way). Structured: the JSON
        event format, no header.
        """
        if self.structured:
            return self.structured_json(event), {}, STRUCTURED_CONTENT_TYPE
        headers = {prefix + name: value for name, value in self.attributes(event).items()}
        return event.payload_json, headers, DATA_CONTENT_TYPE


def _rfc3339(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:  # an event made by hand; PostgreSQL's `timestamptz` always has one
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.isoformat()


def _json_text(value: Any) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise Unmappable(f"a header cannot be sent as text: {exc}") from None
