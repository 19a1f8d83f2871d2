"""W3C Trace Context in an event's headers: found, checked, and carried on to the sinks.

A producer that writes `traceparent` (and optionally `tracestate`) into an event's headers (see
`relay.trace_headers`) links what it traced to what the sink delivers: the webhook sends them as
HTTP headers, NATS, RabbitMQ and Kafka as message headers, Redis as fields of the stream entry.

The rules, from the W3C Trace Context recommendation (https://www.w3.org/TR/trace-context/):

- The header names are matched in any case (`Traceparent` too) and sent as `traceparent` and
  `tracestate`, the names OpenTelemetry's propagators write and read.
- `traceparent` is `version-traceid-parentid-flags` in lowercase hex: version `00` is exactly 55
  characters; a later version (not `ff`) may carry more after a `-`, passed on as it is; an
  all-zero trace or parent id is invalid.
- `tracestate` is at most 32 comma-separated `key=value` members, keys unique, in the spec's
  grammar. It counts only beside a valid `traceparent`.
- A value is passed on verbatim, but for spaces and tabs around it (optional whitespace in HTTP).
- Anything invalid (a wrong shape, not a string, the same name twice in different cases) is
  ignored: not carried, not linked, and never an error. A consumer's propagator would ignore it
  anyway, or start a trace from garbage.

Nothing here imports OpenTelemetry: the sinks carry the context whether or not it is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from .ports import JsonObject

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT, TRACESTATE})
"""The header names relay owns, lowercase: an event's own headers of these names, in any case,
are replaced by the checked ones."""

_OWS = " \t"
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-[\x21-\x7e]*)?"  # later versions: visible ASCII
)
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
_KEY_CHARS = r"[a-z0-9_\-*/]"
_MEMBER = re.compile(
    rf"(?P<key>[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}})"
    r"=(?P<value>[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])"
)
_MAX_MEMBERS = 32
_MAX_TRACESTATE = _MAX_MEMBERS * (1 + 256 + 1 + 256) + 4096  # every member at its longest, and OWS
# On the bytes of a JSON object from PostgreSQL: jsonb writes a key's letters as they are, never as
# `\u` escapes, so an object without this text has no trace header and is never decoded.
_MENTIONS_TRACE = re.compile(rb"traceparent", re.IGNORECASE)


@attrs.frozen
class TraceContext:
    """A valid W3C trace context, as found in an event's headers.

    Attributes:
        traceparent: the `traceparent` value as written (without surrounding whitespace).
        tracestate: the `tracestate` value as written, or None when absent, empty or invalid.
    """

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        """The trace id, 32 lowercase hex digits."""
        return self.traceparent[3:35]

    @property
    def parent_id(self) -> str:
        """The producer's span id, 16 lowercase hex digits."""
        return self.traceparent[36:52]

    @property
    def flags(self) -> int:
        """The trace flags, a byte: bit 0 is `sampled`."""
        return int(self.traceparent[53:55], 16)

    @property
    def sampled(self) -> bool:
        """Whether the producer's `sampled` flag is set."""
        return self.flags & 1 == 1

    def headers(self) -> dict[str, str]:
        """`traceparent`, and `tracestate` when there is one, under their lowercase names."""
        if self.tracestate is None:
            return {TRACEPARENT: self.traceparent}
        return {TRACEPARENT: self.traceparent, TRACESTATE: self.tracestate}


def check_traceparent(value: object) -> str | None:
    """`value` less surrounding whitespace if it is a valid `traceparent`, else None."""
    if not isinstance(value, str) or len(value) > 4096:
        return None
    text = value.strip(_OWS)
    found = _TRACEPARENT.fullmatch(text)
    if found is None or found["version"] == "ff":
        return None
    if found["version"] == "00" and found["rest"] is not None:
        return None  # version 00 is exactly 55 characters
    if found["trace_id"] == _ZERO_TRACE_ID or found["parent_id"] == _ZERO_PARENT_ID:
        return None
    return text


def check_tracestate(value: object) -> str | None:
    """`value` less surrounding whitespace if it is a valid, non-empty `tracestate`, else None."""
    if not isinstance(value, str) or len(value) > _MAX_TRACESTATE:
        return None
    text = value.strip(_OWS)
    keys: set[str] = set()
    for member in text.split(","):
        member = member.strip(_OWS)
        if not member:
            continue  # empty list members are allowed, and skipped
        found = _MEMBER.fullmatch(member)
        if found is None or found["key"] in keys:
            return None
        keys.add(found["key"])
    if not keys or len(keys) > _MAX_MEMBERS:
        return None
    return text


def find_trace_context(headers: Mapping[str, Any]) -> TraceContext | None:
    """The valid trace context in `headers`, or None; never raises.

    Headers that cannot be read (a `JsonObject` over no JSON object) hold none. Headers from
    PostgreSQL without the text `traceparent` are not even decoded.
    """
    try:
        if isinstance(headers, JsonObject) and _MENTIONS_TRACE.search(headers.json) is None:
            return None
        found: dict[str, list[Any]] = {}
        for name, value in headers.items():
            if isinstance(name, str) and (lowered := name.lower()) in TRACE_HEADERS:
                found.setdefault(lowered, []).append(value)
    except (TypeError, ValueError, RecursionError):  # the writer's headers are no JSON object
        return None
    parents = found.get(TRACEPARENT, [])
    traceparent = check_traceparent(parents[0]) if len(parents) == 1 else None
    if traceparent is None:
        return None  # a tracestate means nothing without its traceparent
    states = found.get(TRACESTATE, [])
    return TraceContext(traceparent, check_tracestate(states[0]) if len(states) == 1 else None)


def trace_headers_of(headers: Mapping[str, Any]) -> dict[str, str]:
    """The checked `traceparent` and `tracestate` in `headers`, lowercase; {} when there is none."""
    context = find_trace_context(headers)
    return {} if context is None else context.headers()


def replace_trace_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `headers` where `traceparent` and `tracestate`, in any case, are replaced by the
    checked ones under their lowercase names (dropped when invalid). The sinks that pass the
    writer's headers on as message headers send this instead.

    Raises:
        TypeError, ValueError: `headers` cannot be read (as reading them raises anyway).
    """
    copy = {
        name: value
        for name, value in headers.items()
        if not (isinstance(name, str) and name.lower() in TRACE_HEADERS)
    }
    copy.update(trace_headers_of(headers))
    return copy
