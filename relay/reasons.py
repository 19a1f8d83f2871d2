"""Why an event failed, as text fit for a log line and for `last_error` alike.

A reason comes from outside: an exception's message, an HTTP endpoint's error body, a broker's
words. Before it is logged or stored it goes through `clean_reason`, the one path for both, so
the log and the table never disagree on what was masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .secrets import mask

MAX_REASON = 1000  # characters kept of a reason; `last_error` is for a person to read

# C0 and C1 controls (ANSI escapes start with ESC, a line break would split a log line) and the
# bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def describe_error(exc: BaseException) -> str:
    """`Type: message` for an exception; for an exception group, its leaves, not the group.

    A group's own message ("Exceptions from Trio nursery") says nothing about the failure.
    """
    if isinstance(exc, BaseExceptionGroup):
        leaves = [describe_error(inner) for inner in exc.exceptions]
        return "; ".join(dict.fromkeys(leaves))  # the same failure in many tasks is said once
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def clean_reason(reason: str, secrets: Iterable[str] = ()) -> str:
    """`reason` as one line of printable text: secrets masked (`relay.secrets.mask`, with
    `secrets` and whatever looks like one), control characters escaped (`\\x1b`, `\\n`), at most
    `MAX_REASON` characters."""
    text = _CONTROL.sub(_escape, mask(reason, secrets))
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1] + "…"
    return text


def _escape(found: re.Match[str]) -> str:
    char = found[0]
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
