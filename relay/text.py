"""Text from the outbox made safe for a terminal: topics, keys and errors are written by others."""

from __future__ import annotations

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every character a terminal could act on escaped as in a Python repr.

    C0 and C1 controls, DEL, and the other non-printable characters (format characters such as
    right-to-left overrides, line and paragraph separators) become `\\xNN`, `\\uNNNN` or
    `\\UNNNNNNNN`, so an escape sequence in a topic or an error is shown, never run. Backslashes
    are doubled, so the escaped form cannot be mistaken for the text.
    """
    return "".join(_escape(c) for c in text)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def one_line(text: str, width: int = 200) -> str:
    """`text` on one line (its line breaks escaped, see `printable`), cut to `width` characters."""
    shown = printable(text)
    return shown if len(shown) <= width else f"{shown[: width - 3]}..."
