"""Events as a writer hands them over, checked and turned into JSON text before any driver sees
them: the one place every enqueue path (psycopg, SQLAlchemy, asyncpg) validates its input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

# PostgreSQL takes at most 65,535 parameters per statement; 4 per row leaves room for 16,383.
ROWS_PER_STATEMENT = 10_000


@attrs.frozen
class NewEvent:
    """An event to enqueue: `payload` is anything `json.dumps` accepts."""

    topic: str
    payload: Any
    key: str | None = None
    headers: Mapping[str, Any] | None = None


@attrs.frozen
class EventRow:
    """A checked event, as the outbox's columns take it: payload and headers as JSON text."""

    topic: str
    key: str | None
    payload: str
    headers: str


# JSON's escape of a NUL character: `\u0000` after an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _json(value: Any, what: str, index: int, topic: str) -> str:
    """`value` as JSON text, dumped here rather than by a driver, so that a value JSON cannot hold
    names its event. No NaN or Infinity, no NUL character and no lone surrogate: PostgreSQL's
    jsonb refuses them all."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode()  # a lone surrogate (text decoded with surrogateescape) is no UTF-8
        if _NUL_ESCAPE.search(text):
            raise ValueError("it holds a NUL character (\\u0000), which jsonb cannot store")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"event {index} (topic {topic!r}): {what} is not valid JSON: {exc}") from None
    return text


def _is_text(value: object) -> bool:
    """A string PostgreSQL's text can store: no NUL, and valid UTF-8 (no lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def event_row(event: NewEvent, index: int) -> EventRow:
    """`event`, the `index`-th of its call, checked.

    Raises:
        ValueError: an empty topic or one that is no string, a key that is neither a string nor
            None, either with a NUL character or a lone surrogate; NaN, Infinity, a NUL or a lone
            surrogate in the payload or headers.
        TypeError: a payload or headers JSON cannot hold, or headers that are not a mapping.
    """
    if not event.topic or not _is_text(event.topic):
        raise ValueError(
            f"event {index}: topic must be a non-empty UTF-8 string without NUL,"
            f" got {event.topic!r}"
        )
    if event.key is not None and not _is_text(event.key):
        raise ValueError(
            f"event {index} (topic {event.topic!r}): key must be a UTF-8 string without NUL"
            f" or None, got {event.key!r}"
        )
    if event.headers is not None and not isinstance(event.headers, Mapping):
        raise TypeError(
            f"event {index} (topic {event.topic!r}): headers must be a mapping,"
            f" got {type(event.headers).__name__}"
        )
    return EventRow(
        topic=event.topic,
        key=event.key,
        payload=_json(event.payload, "payload", index, event.topic),
        headers=_json(dict(event.headers or {}), "headers", index, event.topic),
    )


def checked_chunks(events: Iterable[NewEvent]) -> Iterator[Sequence[EventRow]]:
    """The events checked, in statements' worth (`ROWS_PER_STATEMENT`). A chunk is checked whole
    before it is yielded, so a bad event stops its own statement before it is sent; the chunks
    before it were already written in the caller's transaction, which its error rolls back as
    any failed write in a transaction would."""
    batch: list[EventRow] = []
    for index, event in enumerate(events):
        batch.append(event_row(event, index))
        if len(batch) == ROWS_PER_STATEMENT:
            yield batch
            batch = []
    if batch:
        yield batch


def as_columns(
    rows: Sequence[EventRow],
) -> tuple[list[str], list[str | None], list[str], list[str]]:
    """The rows as four parallel lists (topics, keys, payloads, headers), for drivers that bind
    one array per column."""
    return (
        [row.topic for row in rows],
        [row.key for row in rows],
        [row.payload for row in rows],
        [row.headers for row in rows],
    )
