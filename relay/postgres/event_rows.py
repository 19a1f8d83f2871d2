"""Outbox rows to events and back: how a claim's rows load, and what a settle writes."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.types.json import Jsonb

from ..ports import JsonObject, OutboxEvent


class _JsonbAsBytes(Loader):
    """Load jsonb as its JSON text, undecoded: decoding is the sink's business, if at all."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


async def load_jsonb_as_bytes(conn: psycopg.AsyncConnection[Any]) -> None:
    """Configure `conn` to hand jsonb columns over as their JSON text (the pool's `configure`)."""
    conn.adapters.register_loader("jsonb", _JsonbAsBytes)


# Most events carry no headers: they share one (read-only) mapping.
_NO_HEADERS = JsonObject(b"{}")


def event_from_row(row: tuple[Any, ...]) -> OutboxEvent:
    """The event of a row the claim returned (`Queries.claim`'s columns, in order)."""
    id, topic, key, payload, headers, created_at, attempts, _cut = row
    headers = _NO_HEADERS if headers == b"{}" else JsonObject(headers)
    # Positional: a third cheaper than keywords, on every event (the fields' order is the
    # claim's column order).
    return OutboxEvent(id, topic, key, payload, headers, created_at, attempts)


def row_params(
    event: OutboxEvent, attempts: int, delay: float, last_error: str | None
) -> dict[str, Any]:
    """The parameters of `Queries.put_back` and `Queries.bury` for `event`."""
    return {
        "id": event.id,
        "topic": event.topic,
        "key": event.key,
        "payload": event.payload_json.decode(),
        # As read, when read from here: a settle must not depend on decoding what a writer wrote.
        "headers": (
            event.headers.json.decode()
            if isinstance(event.headers, JsonObject)
            else Jsonb(dict(event.headers))
        ),
        "created_at": event.created_at,
        "attempts": attempts,
        "delay": delay,
        "last_error": last_error,
    }
