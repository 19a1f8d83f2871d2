"""The rows of a `MemoryOutbox`: as it holds them, as it shows them, and the checks a claim makes
on them (what the PostgreSQL outbox's claim statement computes)."""

from __future__ import annotations

import json
import math

import attrs

from ..ports import JsonObject, OutboxEvent


@attrs.frozen
class PendingRow:
    """An outbox row as the table holds it: the event, when it is next available, its last error."""

    event: OutboxEvent
    available_at: float
    last_error: str | None


@attrs.frozen
class DeadEvent:
    """A row of the dead table: the event (its final `attempts`), why it died, and when."""

    event: OutboxEvent
    reason: str
    failed_at: float


@attrs.define(eq=False)
class StoredRow:
    """A `MemoryOutbox`'s own record of a row, changed in place by a settle (`PendingRow` is
    what it shows of one)."""

    event: OutboxEvent
    available_at: float
    last_error: str | None = None
    enqueued_at: float = -math.inf  # trio time; -inf: enqueued before `trio.run`, age unknown


def event_size(event: OutboxEvent) -> int:
    """The bytes of an event's payload and headers as JSON: what a claim's byte limit counts."""
    headers = event.headers
    encoded = (
        headers.json if isinstance(headers, JsonObject) else json.dumps(dict(headers)).encode()
    )
    return len(event.payload_json) + len(encoded)


def fitting_prefix(rows: list[StoredRow], max_bytes: int | None) -> list[StoredRow]:
    """The longest prefix of `rows` within `max_bytes`, and never less than the first row."""
    if max_bytes is None:
        return rows
    total = 0
    for taken, row in enumerate(rows):
        total += event_size(row.event)
        if total > max_bytes and taken > 0:
            return rows[:taken]
    return rows


def waits_for_retry(row: StoredRow, now: float) -> bool:
    """Whether `row` waits for a retry or a deferral (retried rows and rows with a
    `last_error`, as the PostgreSQL outbox's partial indexes hold them) that has not come yet."""
    return (row.event.attempts > 0 or row.last_error is not None) and row.available_at > now
