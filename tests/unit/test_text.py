"""Text written by others is shown, never run by the terminal."""

from __future__ import annotations

import pytest

from relay.text import one_line, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("orders.created", "orders.created"),
        ("\x1b[2J\x07", "\\x1b[2J\\x07"),  # C0: clear screen, bell
        ("a\x7fb", "a\\x7fb"),  # DEL
        ("\x9b31m", "\\x9b31m"),  # C1: the one-byte CSI
        ("line\nnext\r\t", "line\\nnext\\r\\t"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # right-to-left override
        ("back\\slash", "back\\\\slash"),
        ("café ✓", "café ✓"),
    ],
)
def test_printable_escapes_what_a_terminal_could_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_one_line_cuts_long_text() -> None:
    assert one_line("x" * 300, width=10) == "xxxxxxx..."
    assert one_line("a\nb") == "a\\nb"
