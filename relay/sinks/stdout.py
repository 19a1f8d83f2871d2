"""The `stdout` sink: one JSON object per event per line, for pipes and for looking."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO

import attrs
import trio

from ..errors import OutputClosed, SinkUnavailable
from ..ports import OutboxEvent
from .encoding import encode_event


@attrs.define(eq=False)
class StdoutSink:
    """Writes each event as one line of JSON (see `encode_event`) to standard output.

    Each batch is one write and one flush. The write is synchronous: a reader slower than the relay
    holds the relay back, which is the back-pressure a pipe should give. A closed output (the
    reader of a pipe went away) is no fault of the events: it raises `OutputClosed`, the batch is
    rolled back untouched and the relay stops, since stdout cannot reopen. Any other write error
    (a full disk) raises `SinkUnavailable`: the batch waits untouched.

    Attributes:
        stream: where to write; None means `sys.stdout.buffer`, looked up at each batch.
    """

    stream: BinaryIO | None = None

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        """Write the events, one line each, in the order given."""
        await trio.lowlevel.checkpoint()
        if not events:
            return
        stream = sys.stdout.buffer if self.stream is None else self.stream
        try:
            stream.write(b"\n".join([encode_event(event) for event in events]) + b"\n")
            stream.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise OutputClosed("stdout is closed") from None
        except ValueError:  # "I/O operation on closed file": closed in this process
            raise OutputClosed("stdout is closed") from None
        except OSError as exc:
            raise SinkUnavailable(f"cannot write to stdout: {exc.strerror or exc}") from None
