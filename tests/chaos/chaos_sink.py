"""The sink the chaos scenarios give `relay run`: records every delivery, fails on demand.

`relay run --sink python:tests.chaos.chaos_sink:handler`, configured by environment:
RELAY_CHAOS_LOG (the file to append to), RELAY_CHAOS_FAIL (the fraction of events that fail),
RELAY_CHAOS_HANG (the fraction of deliveries, i.e. batches, that hang) and RELAY_CHAOS_SEED.
Each delivered event is one line: `<monotonic ns> <id> <key> <seconds since created_at>`,
flushed per batch, so a SIGKILL loses nothing the relay could have counted as delivered.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence

import trio

from relay import OutboxEvent, PartialDelivery

_log = open(os.environ["RELAY_CHAOS_LOG"], "a", buffering=1)  # noqa: SIM115 (process-long)
_fail = float(os.environ.get("RELAY_CHAOS_FAIL", "0"))
_hang = float(os.environ.get("RELAY_CHAOS_HANG", "0"))
_rng = random.Random(int(os.environ.get("RELAY_CHAOS_SEED", str(os.getpid()))))


async def handler(events: Sequence[OutboxEvent]) -> None:
    failed: dict[int, str] = {}
    failed_keys: set[str | None] = set()
    lines = []
    if _rng.random() < _hang:
        await trio.sleep_forever()  # the relay's delivery timeout must end this
    for event in events:
        if event.key is not None and event.key in failed_keys:
            failed[event.id] = "held behind a failure of its key"
            continue
        if _rng.random() < _fail:
            failed[event.id] = "chaos"
            failed_keys.add(event.key)
            continue
        delay = time.time() - event.created_at.timestamp()
        lines.append(f"{time.monotonic_ns()} {event.id} {event.key or '-'} {delay:.4f}\n")
    _log.write("".join(lines))
    _log.flush()
    if failed:
        raise PartialDelivery(failed)
