"""The wire form of an event shared by the byte-level sinks: one compact JSON object.

`{"id":…,"topic":…,"key":…,"payload":…,"headers":…,"created_at":…,"attempts":…}` in UTF-8, the
payload and the headers spliced in as the bytes PostgreSQL sent, never decoded: decoding is the
relay's main cost.
"""

from __future__ import annotations

import json

from ..ports import JsonObject, OutboxEvent

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encode_event(event: OutboxEvent) -> bytes:
    """The event as one JSON object in UTF-8, without a line break in it or after it.

    The payload's bytes are copied as they are. jsonb's text output never holds a raw line break
    (inside strings it is escaped as `\\n`), so this is the path taken; a payload that does hold one
    (written by hand, from `json` rather than `jsonb`) is re-encoded compactly instead, so that one
    event is always one line.
    """
    payload = event.payload_json
    if b"\n" in payload or b"\r" in payload:
        payload = _encode(json.loads(payload)).encode()
    return (
        b'{"id":%d,"topic":%b,"key":%b,"payload":%b,"headers":%b,"created_at":%b,"attempts":%d}'
        % (
            event.id,
            _encode(event.topic).encode(),
            _encode(event.key).encode(),
            payload,
            headers_json(event),
            _encode(event.created_at.isoformat()).encode(),
            event.attempts,
        )
    )


def headers_json(event: OutboxEvent) -> bytes:
    """The event's headers as one line of JSON: the bytes PostgreSQL sent, when that is where
    they came from."""
    headers = event.headers
    if isinstance(headers, JsonObject) and b"\n" not in headers.json:
        return headers.json
    return _encode(headers if isinstance(headers, dict) else dict(headers)).encode()
