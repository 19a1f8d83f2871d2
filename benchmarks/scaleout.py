"""Scale-out: 1, 2 and 3 `relay run` processes on one backlog; time to empty and duplicates."""

from __future__ import annotations

import collections
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import Table
from .server import KEYS, Bench, start_relay, wait_empty


def once(bench: Bench, processes: int, n: int, log: Any) -> list[str]:
    bench.fill(0)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        outputs = [folder / f"out-{k}.jsonl" for k in range(processes)]
        running = []
        try:
            for k, path in enumerate(outputs):
                with path.open("wb") as stdout:
                    running.append(start_relay(bench, folder, f"relay-{k}", stdout))
            # Every relay is listening: one INSERT of the whole backlog wakes them all at once.
            committed = bench.insert(n)
            emptied = wait_empty(bench, timeout=900)
            time.sleep(0.5)
        finally:
            for process in running:
                bench.processes.stop(process)
        counts: collections.Counter[int] = collections.Counter()
        per_process = []
        for path in outputs:
            ids = [json.loads(line)["id"] for line in path.read_bytes().splitlines() if line]
            per_process.append(len(ids))
            counts.update(ids)
    elapsed = emptied - committed
    delivered = len(counts)
    duplicates = sum(counts.values()) - delivered
    log(
        f"  scale-out x{processes}: {elapsed:.2f} s, {n / elapsed:,.0f} events/s, "
        f"{delivered:,} distinct, {duplicates} duplicates, split {per_process}"
    )
    return [
        str(processes),
        f"{elapsed:.2f}",
        f"{n / elapsed:,.0f}",
        f"{delivered:,}",
        str(duplicates),
        " / ".join(f"{c:,}" for c in per_process),
    ]


def run(bench: Bench, counts: Sequence[int], n: int, log: Any, repeat: int = 1) -> Table:
    rows = []
    for k in counts:
        runs = sorted(
            (once(bench, k, n, log) for _ in range(repeat)), key=lambda row: float(row[1])
        )
        rows.append(runs[len(runs) // 2])  # the run with the median time to empty
    return Table(
        f"scale-out: `relay run` processes on a {n:,}-event backlog over {KEYS:,} keys",
        [
            "processes",
            "time to empty s",
            "events/s",
            "distinct delivered",
            "duplicates",
            "events per process",
        ],
        rows,
        [
            f"median of {repeat} runs (the run with the median time to empty)"
            if repeat > 1
            else "one run",
            "relays started and listening first, then the backlog inserted in one statement; "
            "timed from that commit until the outbox is empty; stdout sink to files, ids counted "
            "across them; batch 500.",
        ],
    )
