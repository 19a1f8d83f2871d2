"""Idle CPU and peak memory of a `relay run` daemon, from /proc through psutil."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .report import Table
from .server import Bench, start_relay, wait_empty


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def idle(bench: Bench, seconds: float, log: Any) -> list[str]:
    """CPU seconds a started, idle daemon uses over `seconds`, scaled to 60 s."""
    bench.fill(0)
    with tempfile.TemporaryDirectory() as folder:
        process = start_relay(bench, Path(folder), "idle", subprocess.DEVNULL)
        try:
            time.sleep(2.0)  # past start-up
            before = _cpu(process.pid)
            time.sleep(seconds)
            used = _cpu(process.pid) - before
        finally:
            bench.processes.stop(process)
    per_minute = used * 60 / seconds
    log(f"  idle: {used:.3f} CPU s over {seconds:g} s")
    return [
        "idle CPU",
        f"{per_minute:.3f} s per 60 s",
        f"measured over {seconds:g} s (user+system of the process, after start-up)",
    ]


def memory(bench: Bench, n: int, log: Any) -> tuple[list[str], float]:
    """Peak RSS (VmHWM) of a daemon that drained `n` events to stdout (/dev/null)."""
    bench.fill(n)
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        process = start_relay(bench, Path(folder), "memory", subprocess.DEVNULL, wait=False)
        try:
            emptied = wait_empty(bench, timeout=900, poll=0.2)
            time.sleep(0.5)  # the last batch's write is before its commit; let it settle
            peak = _peak_rss_mb(process.pid)
        finally:
            bench.processes.stop(process)
    elapsed = emptied - started
    log(f"  memory after {n:,}: {peak:.1f} MB, drained in {elapsed:.1f} s")
    return [
        f"peak RSS after {n:,} events",
        f"{peak:.1f} MB",
        f"relay run, stdout sink to /dev/null, batch 500; process start to empty "
        f"{elapsed:.1f} s ({n / elapsed:,.0f} events/s incl. start-up)",
    ], peak


def run(bench: Bench, idle_seconds: float, sizes: list[int], log: Any) -> Table:
    rows = [idle(bench, idle_seconds, log)]
    peaks = []
    for n in sizes:
        row, peak = memory(bench, n, log)
        rows.append(row)
        peaks.append(peak)
    if len(peaks) > 1:
        rows.append(
            [
                "peak RSS ratio",
                f"{peaks[-1] / peaks[0]:.2f}x",
                f"{sizes[-1]:,} vs {sizes[0]:,} events",
            ]
        )
    return Table(
        "idle and memory: one `relay run` process", ["what", "value", "how"], rows, left=(0, 2)
    )
